//! cluster.toml: schema, validation, node view, diff.
