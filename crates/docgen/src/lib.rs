//! The man pages and shell completions of the Debian package, generated from the code:
//! the three programs' pages and completions from their clap definitions
//! (`vrrpd::cli::command`, `lbd::cli::command`, `vrrpctl::command`), and
//! cluster.toml(5) from `cluster.toml.example`, the annotated reference the tests
//! compile in and the package installs as the default `/etc/lbsuite/cluster.toml`.

use std::fs;
use std::path::Path;

use anyhow::Context;
use clap_complete::Shell;
use roff::{bold, italic, roman, Roff};

/// The annotated example: every table and key with its meaning, default and limits.
pub const EXAMPLE: &str = include_str!("../../../cluster.toml.example");

/// The programs: (name, their command line).
pub fn programs() -> Vec<(&'static str, clap::Command)> {
    vec![
        ("vrrpd", vrrpd::cli::command()),
        ("lbd", lbd::cli::command()),
        ("vrrpctl", vrrpctl::command()),
    ]
}

/// Writes `man/` (section 8 per program, each vrrpctl subcommand as
/// vrrpctl-NAME(8), and cluster.toml(5)) and `completions/{bash,zsh,fish}` under
/// `out`. Returns the paths written, relative to `out`.
pub fn write_all(out: &Path) -> anyhow::Result<Vec<String>> {
    let mut written = Vec::new();
    let mut put = |rel: String, bytes: Vec<u8>| -> anyhow::Result<()> {
        let path = out.join(&rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        fs::write(&path, bytes).with_context(|| format!("write {}", path.display()))?;
        written.push(rel);
        Ok(())
    };
    for (name, cmd) in programs() {
        put(format!("man/{name}.8"), man_page(cmd.clone(), "8")?)?;
        let mut built = cmd.clone();
        built.build();
        // A page per subcommand at every depth (vrrpctl-drill-failover(8) too): a
        // page's SUBCOMMANDS section names the pages below it.
        let mut pending: Vec<(String, clap::Command)> = vec![(name.to_string(), built)];
        while let Some((prefix, parent)) = pending.pop() {
            for sub in parent
                .get_subcommands()
                .filter(|s| !s.is_hide_set() && s.get_name() != "help")
            {
                let page = format!("{prefix}-{}", sub.get_name());
                put(
                    format!("man/{page}.8"),
                    man_page(sub.clone().display_name(page.clone()), "8")?,
                )?;
                pending.push((page, sub.clone()));
            }
        }
        for (shell, rel) in [
            (Shell::Bash, format!("completions/bash/{name}")),
            (Shell::Zsh, format!("completions/zsh/_{name}")),
            (Shell::Fish, format!("completions/fish/{name}.fish")),
        ] {
            let mut bytes = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), name, &mut bytes);
            put(rel, bytes)?;
        }
    }
    put(
        "man/cluster.toml.5".into(),
        cluster_toml_page(EXAMPLE).into_bytes(),
    )?;
    Ok(written)
}

fn man_page(cmd: clap::Command, section: &str) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    clap_mangen::Man::new(cmd)
        .section(section)
        .manual("lbsuite")
        .render(&mut bytes)?;
    Ok(bytes)
}

/// A line of the example: prose, TOML (a key, a table header, or a key left
/// commented out as an option), or a separator.
enum Line<'a> {
    Prose(&'a str),
    Toml(&'a str),
    Table(&'a str),
    Rule,
    Blank,
}

fn classify(line: &str) -> Line<'_> {
    let t = line.trim_end();
    if t.is_empty() {
        return Line::Blank;
    }
    if let Some(c) = t.strip_prefix('#') {
        let c = c.strip_prefix(' ').unwrap_or(c);
        if c.starts_with("----") {
            return Line::Rule;
        }
        // A commented-out key (`# key = value`) or an indented example is TOML.
        let key_like = c.split_once(" = ").is_some_and(|(k, _)| {
            !k.is_empty()
                && k.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "_.\"".contains(ch))
        });
        if key_like || c.starts_with("  ") {
            return Line::Toml(c);
        }
        return Line::Prose(c);
    }
    if t.starts_with('[') {
        return Line::Table(t);
    }
    Line::Toml(t)
}

/// cluster.toml(5): the example's leading comment as the description, then one
/// subsection per table with its comments as text and its keys as examples.
pub fn cluster_toml_page(example: &str) -> String {
    let mut page = Roff::new();
    page.control("TH", ["CLUSTER.TOML", "5", "", "lbsuite", "lbsuite"])
        .control("SH", ["NAME"])
        .text([roman(
            "cluster.toml \\- the configuration of an lbsuite cluster (vrrpd, lbd, vrrpctl)",
        )])
        .control("SH", ["SYNOPSIS"])
        .text([bold("/etc/lbsuite/cluster.toml")])
        .control("SH", ["DESCRIPTION"]);
    let mut in_code = false;
    let mut prose = String::new();
    let flush = |page: &mut Roff, prose: &mut String| {
        if !prose.is_empty() {
            page.control("PP", []).text([roman(prose.trim())]);
            prose.clear();
        }
    };
    let mut tables_started = false;
    for line in example.lines() {
        let kind = classify(line);
        let code = matches!(kind, Line::Toml(_));
        if in_code && !code {
            page.control("fi", []).control("RE", []);
            in_code = false;
        }
        match kind {
            Line::Blank => flush(&mut page, &mut prose),
            Line::Rule => {
                flush(&mut page, &mut prose);
                if !tables_started {
                    tables_started = true;
                    page.control("SH", ["TABLES AND KEYS"]);
                }
            }
            Line::Prose(text) => {
                if !prose.is_empty() {
                    prose.push(' ');
                }
                prose.push_str(text);
            }
            Line::Table(header) => {
                flush(&mut page, &mut prose);
                page.control("SS", [header]);
            }
            Line::Toml(text) => {
                flush(&mut page, &mut prose);
                if !in_code {
                    page.control("RS", ["4"]).control("nf", []);
                    in_code = true;
                }
                page.text([roman(text)]);
            }
        }
    }
    flush(&mut page, &mut prose);
    if in_code {
        page.control("fi", []).control("RE", []);
    }
    page.control("SH", ["VALIDATION"]).text([
        roman("A file with any error is refused as a whole and nothing is applied; "),
        bold("vrrpctl check-config"),
        roman(" "),
        italic("FILE"),
        roman(" checks one for both nodes. "),
        bold("systemctl reload vrrpd lbd"),
        roman(" re-reads the file and fails, changing nothing, when it is refused."),
    ]);
    page.control("SH", ["FILES"])
        .text([
            bold("/etc/lbsuite/cluster.toml"),
            roman(": the file both daemons read."),
        ])
        .control("br", [])
        .text([
            bold("/usr/share/doc/lbsuite/cluster.toml.example"),
            roman(": the annotated example this page is made from."),
        ]);
    page.control("SH", ["SEE ALSO"]).text([
        bold("vrrpd"),
        roman("(8), "),
        bold("lbd"),
        roman("(8), "),
        bold("vrrpctl"),
        roman("(8)"),
    ]);
    page.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_page_has_every_table_and_key_of_the_example() {
        let page = cluster_toml_page(EXAMPLE);
        let mut seen = 0;
        for line in EXAMPLE.lines() {
            let t = line.trim();
            if t.starts_with('[') {
                assert!(page.contains(&format!(".SS {t}")), "no subsection {t}");
                seen += 1;
            } else if let Some((key, _)) = t.split_once(" = ").filter(|_| !t.starts_with('#')) {
                assert!(page.contains(&format!("{key} =")), "no key {key}");
                seen += 1;
            }
        }
        assert!(
            seen > 20,
            "only {seen} tables and keys found in the example"
        );
        assert!(page.contains("\n.TH CLUSTER.TOML 5 "), "{}", &page[..80]);
        // roff would take a line starting with a dot or quote for a request.
        assert!(!page.lines().any(|l| l.starts_with('\'')));
    }

    #[test]
    fn every_long_option_is_in_its_page_and_its_completions() {
        let out = tempfile::tempdir().unwrap();
        let written = write_all(out.path()).unwrap();
        for page in [
            "man/vrrpctl-reload.8",
            "man/vrrpctl-drill-failover.8",
            "man/vrrpctl-import-keepalived.8",
        ] {
            assert!(written.contains(&page.to_string()), "{page}: {written:?}");
        }
        for (name, cmd) in programs() {
            let page = std::fs::read_to_string(out.path().join(format!("man/{name}.8"))).unwrap();
            let bash = std::fs::read_to_string(out.path().join(format!("completions/bash/{name}")))
                .unwrap();
            let longs: Vec<_> = cmd.get_arguments().filter_map(|a| a.get_long()).collect();
            assert!(!longs.is_empty(), "{name}");
            for long in longs {
                // clap_mangen escapes the dash: \-\-config.
                assert!(
                    page.contains(&format!("\\-\\-{}", long.replace('-', "\\-"))),
                    "{name}.8 lacks --{long}"
                );
                assert!(
                    bash.contains(&format!("--{long}")),
                    "{name} bash completion lacks --{long}"
                );
            }
        }
    }
}
