//! `lamarck zoo`.
use clap::Args;

#[derive(Args, Debug)]
pub struct ZooArgs {}

pub fn run(_args: ZooArgs) -> anyhow::Result<()> {
    anyhow::bail!("`lamarck zoo` is not implemented yet")
}
