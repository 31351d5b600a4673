//! The `ringcrawl` binary: parse the CLI, run, map errors to exit codes.
fn main() {}
