//! `wimpy completions SHELL`.

use clap_complete::Shell;

use crate::failure::Failure;

/// Print a shell completion script for wimpy.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  wimpy completions bash > ~/.local/share/bash-completion/completions/wimpy\n  wimpy completions zsh > ~/.zfunc/_wimpy\n  wimpy completions fish > ~/.config/fish/completions/wimpy.fish"
)]
pub(crate) struct Completions {
    /// The shell to complete for.
    shell: Shell,
}

impl Completions {
    pub(crate) fn run(&self, mut command: clap::Command) -> Result<(), Failure> {
        clap_complete::generate(self.shell, &mut command, "wimpy", &mut std::io::stdout().lock());
        Ok(())
    }
}
