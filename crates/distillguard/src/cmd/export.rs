use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub store: super::StoreArgs,
    /// Only this account's exchanges.
    #[arg(long)]
    pub account: Option<String>,
    /// Output file (default stdout). The lines are EXCHANGE_FORMAT.md, ready for `scan`.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = args.store.open()?;
    let sink: Box<dyn Write> = match &args.out {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(sink);
    let mut after = 0;
    let mut n = 0u64;
    loop {
        let page = store.exchanges(args.account.as_deref(), after, 10_000)?;
        let Some(last) = page.last() else { break };
        after = last.0;
        for (_, e) in page {
            out.write_all(e.export_line().as_bytes())?;
            out.write_all(b"\n")?;
            n += 1;
        }
    }
    out.flush()?;
    eprintln!("exported {n} exchanges");
    Ok(ExitCode::SUCCESS)
}
