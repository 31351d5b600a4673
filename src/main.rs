//! The `ringcrawl` binary: everything it does lives in the library (`ringcrawl::app`).

fn main() -> std::process::ExitCode {
    ringcrawl::app::main()
}
