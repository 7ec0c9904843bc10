//! lbsuite-docgen OUT_DIR: writes the man pages and shell completions that the
//! Debian package ships (scripts/package.sh runs it).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: lbsuite-docgen OUT_DIR");
        return ExitCode::from(2);
    };
    match docgen::write_all(&out) {
        Ok(written) => {
            println!(
                "lbsuite-docgen: {} files in {}",
                written.len(),
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lbsuite-docgen: {e:#}");
            ExitCode::from(1)
        }
    }
}
