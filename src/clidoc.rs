//! `ringcrawl completions SHELL` and `ringcrawl man`: the shell completion scripts
//! (clap_complete) and the one roff manual page (clap_mangen), both generated from the clap
//! command line in `cli`, so they always list the commands and flags the binary has.
//!
//! The manual is one page, `ringcrawl(1)`: the program's synopsis and options, a COMMANDS
//! list, then one section per command (`RINGCRAWL FETCH`...) with its synopsis, description
//! and options as subsections. One file to install, and `man ringcrawl` shows every flag.

use std::io::{self, Write};

use clap::CommandFactory;
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

use crate::cli::{Cli, CompletionShell};

/// The manual's section (user commands).
const MAN_SECTION: &str = "1";

/// The completion script for `shell`, generated in memory (clap_complete panics on a
/// failed write, so it never writes to the caller's stream itself).
pub(crate) fn completions(shell: CompletionShell) -> Vec<u8> {
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_string();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    out
}

/// The whole manual page as roff text.
pub(crate) fn man_page() -> io::Result<Vec<u8>> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let name = cmd.get_name().to_string();
    let top = Man::new(cmd.clone()).section(MAN_SECTION);
    let mut out = Vec::new();
    top.render_title(&mut out)?;
    top.render_name_section(&mut out)?;
    top.render_synopsis_section(&mut out)?;
    top.render_description_section(&mut out)?;
    top.render_options_section(&mut out)?;

    let subs: Vec<&clap::Command> = cmd.get_subcommands().filter(|s| !s.is_hide_set()).collect();
    let mut list = Roff::default();
    list.control("SH", ["COMMANDS"]);
    for sub in &subs {
        list.control("TP", []);
        list.text([bold(format!("{name} {}", sub.get_name()))]);
        if let Some(about) = sub.get_about() {
            list.text([roman(about.to_string())]);
        }
    }
    list.to_writer(&mut out)?;

    for sub in subs {
        let title = format!("{name} {}", sub.get_name()).to_uppercase();
        let mut head = Roff::default();
        head.control("SH", [title.as_str()]);
        head.to_writer(&mut out)?;
        let page = Man::new(sub.clone());
        let mut part = Vec::new();
        page.render_synopsis_section(&mut part)?;
        page.render_description_section(&mut part)?;
        page.render_options_section(&mut part)?;
        out.extend_from_slice(&demote_sections(&part));
        if let Some(notes) = sub.get_after_long_help().or_else(|| sub.get_after_help()) {
            notes_section(&notes.to_string()).to_writer(&mut out)?;
        }
    }
    top.render_version_section(&mut out)?;
    Ok(out)
}

/// A command's closing paragraph (its `--help` text after the options) as a NOTES
/// subsection, line breaks kept (the install commands are one per line).
fn notes_section(text: &str) -> Roff {
    let mut r = Roff::default();
    r.control("SS", ["NOTES"]);
    for line in text.lines() {
        r.text([roman(line.trim())]);
        r.control("br", []);
    }
    r
}

/// `.SH` headings turned into `.SS`: a command's parts become subsections of its section.
fn demote_sections(roff: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(roff);
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        match line.strip_prefix(".SH ") {
            Some(rest) => {
                out.push_str(".SS ");
                out.push_str(rest);
            }
            None => out.push_str(line),
        }
    }
    out.into_bytes()
}

/// Write `bytes` to standard output; a reader that went away (`ringcrawl man | head`) is
/// not an error.
pub(crate) fn print(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_the_commands_and_flags() {
        for shell in [
            CompletionShell::Bash,
            CompletionShell::Zsh,
            CompletionShell::Fish,
        ] {
            let text = String::from_utf8(completions(shell)).unwrap();
            for word in ["fetch", "run", "submit", "load", "completions", "man"] {
                assert!(text.contains(word), "{shell:?}: no {word}");
            }
            assert!(text.contains("concurrency"), "{shell:?}");
        }
    }

    #[test]
    fn the_man_page_has_a_section_per_command_and_their_flags() {
        let page = String::from_utf8(man_page().unwrap()).unwrap();
        // clap_mangen's preamble (a quote string definition), then the title.
        let title = page
            .lines()
            .find(|l| !l.starts_with(".ie") && !l.starts_with(".el"));
        assert!(title.unwrap().starts_with(".TH ringcrawl 1"), "{title:?}");
        for section in [
            "RINGCRAWL FETCH",
            "RINGCRAWL RUN",
            "RINGCRAWL SUBMIT",
            "RINGCRAWL COLLECT",
            "RINGCRAWL LOAD",
            "RINGCRAWL COMPLETIONS",
            "RINGCRAWL MAN",
        ] {
            assert!(
                page.contains(&format!(".SH \"{section}\"")),
                "no section {section}"
            );
        }
        assert!(page.contains("concurrency"));
        assert!(page.contains("check\\-config"));
        // Only the page's own sections (NAME, SYNOPSIS, DESCRIPTION, OPTIONS,
        // COMMANDS, VERSION) and one per subcommand are top-level ones.
        let top: Vec<&str> = page.lines().filter(|l| l.starts_with(".SH ")).collect();
        let commands = Cli::command().get_subcommands().count();
        assert_eq!(top.len(), 6 + commands, "{top:?}");
        assert!(!page.contains("EXTRA"));
    }

    #[test]
    fn demoting_turns_sections_into_subsections() {
        let got = demote_sections(b".SH SYNOPSIS\nx\n.SH OPTIONS\ny\n.SHOUT\n");
        assert_eq!(got, b".SS SYNOPSIS\nx\n.SS OPTIONS\ny\n.SHOUT\n");
    }
}
