//! `lamarck merge`.
use clap::Args;

#[derive(Args, Debug)]
pub struct MergeArgs {}

pub fn run(_args: MergeArgs) -> anyhow::Result<()> {
    anyhow::bail!("`lamarck merge` is not implemented yet")
}
