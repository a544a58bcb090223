//! The `ivr-campaign` binary: parse the command line, set up logging and signals, run, map to an exit code.

use std::process::ExitCode;

use clap::Parser;
use tokio::sync::watch;

use ivr_campaign::cli::{Cli, Command};
use ivr_campaign::engine::Stage;
use ivr_campaign::error::{Error, exit};
use ivr_campaign::output::progress::Progress;
use ivr_campaign::output::{metrics, status};
use ivr_campaign::settings::{RunConfig, sim_settings_from_args};
use ivr_campaign::{logging, simulator};

/// A line on stderr. Never panics: a closed stderr (`2>&1 | head`, a log reader that went away) must not
/// stop a run, so a line that cannot be written is dropped.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

/// A line on stdout, dropped likewise when nobody reads it.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One line: the first line of clap's message, without its usage block.
            let text = e.render().to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("invalid command line")
                .trim_start_matches("error: ");
            say!("ivr-campaign: {first} (see --help)");
            return ExitCode::from(exit::USAGE as u8);
        }
    };
    let (format, progress) = match (
        cli.log_format.parse::<logging::Format>(),
        cli.progress.parse::<Progress>(),
    ) {
        (Ok(f), Ok(p)) => (f, p),
        (Err(e), _) => return usage(&format!("--log-format: {e}")),
        (_, Err(e)) => return usage(&format!("--progress: {e}")),
    };
    logging::init(cli.verbose, cli.quiet, format, cli.log_full_numbers);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            say!("ivr-campaign: cannot start the async runtime: {e}");
            return ExitCode::from(exit::SOFTWARE as u8);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run(*args, progress).await,
            Command::Validate(mut args) => {
                args.dry_run = true;
                run(*args, progress).await
            }
            Command::Report(args) => report(&args),
            Command::RedialUnknown(args) => redial(&args),
            Command::Simulate(args) => simulate(*args).await,
            Command::Completions(args) => {
                let mut cmd = <Cli as clap::CommandFactory>::command();
                // Into memory first: written straight to a closed pipe, the generator would panic.
                let mut script = Vec::new();
                clap_complete::generate(args.shell, &mut cmd, "ivr-campaign", &mut script);
                use std::io::Write as _;
                let _ = std::io::stdout().write_all(&script);
                Ok(exit::OK)
            }
            Command::Man(args) => man(&args),
            Command::Status(args) => {
                match ivr_campaign::settings::paths::locate_state(&args.campaign).and_then(|d| {
                    if args.json {
                        status::json(&d).map(|v| format!("{v:#}"))
                    } else {
                        status::report(&d)
                    }
                }) {
                    Ok(text) => {
                        out!("{}", text.trim_end());
                        Ok(exit::OK)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match code {
        Ok(c) => ExitCode::from(c as u8),
        Err(e) => {
            say!("ivr-campaign: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// First SIGINT/SIGTERM: drain. Second: stop now. A third: give up on what is still being recorded.
fn watch_signals() -> watch::Receiver<Stage> {
    let (tx, rx) = watch::channel(Stage::Run);
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        loop {
            #[cfg(unix)]
            let term_fut = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let term_fut = std::future::pending::<()>();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term_fut => {}
            }
            let was = *tx.borrow();
            // Each says what it does, and what another one would do: the third costs certainty about
            // requests already sent, so an operator must be able to tell it from the second.
            match was {
                Stage::Run => tracing::warn!(
                    "stop requested (first signal): no new calls; waiting for calls in progress, up to drain-timeout (signal again to stop polling)"
                ),
                Stage::Drain => tracing::warn!(
                    "stopping now (second signal): polling stops, and the next run polls the calls placed; call requests already sent are answered and recorded first, within request-timeout (signal again to leave them unknown)"
                ),
                Stage::Now => tracing::warn!(
                    "stopping at once (third signal): call requests still waiting for their answer are left unrecorded and become unknown (each may have been placed); journal writes still failing are given up"
                ),
            }
            // A repeated `Now` still wakes the receivers: the engine takes it as "give up now".
            tx.send_replace(Stage::Drain.max(if was == Stage::Run {
                Stage::Drain
            } else {
                Stage::Now
            }));
        }
    });
    rx
}

fn usage(message: &str) -> ExitCode {
    say!("ivr-campaign: {message}");
    ExitCode::from(exit::USAGE as u8)
}

fn redial(args: &ivr_campaign::cli::RedialArgs) -> Result<i32, Error> {
    let dir = ivr_campaign::settings::paths::locate_state(&args.campaign)?;
    let done = ivr_campaign::store::journal::redial_unknown(&dir, args.rows.as_deref())?;
    out!("{}", done.message(&dir));
    Ok(exit::OK)
}

fn report(args: &ivr_campaign::cli::ReportArgs) -> Result<i32, Error> {
    let dir = ivr_campaign::settings::paths::locate_state(&args.campaign)?;
    let html = ivr_campaign::output::report::build(&dir)?;
    let path = args.html.clone().unwrap_or_else(|| {
        // `results.csv.state` → `results.report.html` beside it.
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let output = name.strip_suffix(".state").unwrap_or("campaign");
        let stem = std::path::Path::new(output)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        dir.with_file_name(format!("{stem}.report.html"))
    });
    std::fs::write(&path, html)
        .map_err(|e| Error::Output(format!("cannot write {}: {e}", path.display())))?;
    out!("{}", path.display());
    Ok(exit::OK)
}

async fn run(args: ivr_campaign::cli::RunArgs, progress: Progress) -> Result<i32, Error> {
    let cfg = RunConfig::from_args(args)?;
    if cfg.dry_run {
        let report = ivr_campaign::commands::validate::run(&cfg)?;
        let parts: Vec<String> = report
            .decisions
            .iter()
            .map(|(d, n)| format!("{d} {n}"))
            .collect();
        out!(
            "Dry run: {}. Decisions: {}",
            parts.join(", "),
            report.output.display()
        );
        if !report.zone_sources.is_empty() {
            let parts: Vec<String> = report
                .zone_sources
                .iter()
                .map(|(s, n)| format!("{s} {n}"))
                .collect();
            out!("Time zones from: {}.", parts.join(", "));
        }
        for (line, x) in &report.samples {
            let mut parts: Vec<String> =
                x.fields.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
            if let Some(info) = &x.info {
                parts.push(format!("info={info:?}"));
            }
            out!("Row {line} would be sent: {}", parts.join(" "));
        }
        for note in &report.notes {
            out!("{note}");
        }
        out!("{}", report.forecast.text);
        return Ok(exit::OK);
    }
    let stop_rx = watch_signals();
    let summary_path = cfg.files.summary_json.clone();
    let metrics_path = cfg.files.metrics_file.clone();
    // A dated list changes its results file every day; the campaign file names the job that runs it.
    // Absolute, so the label is the same from cron and from a shell in another directory.
    let campaign = cfg
        .files
        .campaign_file
        .clone()
        .unwrap_or_else(|| cfg.files.output.clone());
    let campaign = std::path::absolute(&campaign).unwrap_or(campaign);
    let started = std::time::Instant::now();
    let outcome = ivr_campaign::commands::run::run(cfg, stop_rx, progress).await;
    let mut code = match &outcome {
        Ok(summary) => summary.exit_code(),
        Err(e) => e.exit_code(),
    };
    if let Ok(summary) = &outcome {
        say!("ivr-campaign: {}", summary.line());
        if let Some(m) = summary.ending.message() {
            say!("ivr-campaign: {m}");
        }
        if let Some(e) = &summary.input_error {
            say!("ivr-campaign: {e}");
        }
        if let Some(e) = &summary.results_error {
            say!(
                "ivr-campaign: {e}; nothing is lost: rerun the same command when it can be written, and the results are rebuilt from the journal"
            );
        }
        if let Some(path) = &summary_path {
            let text = serde_json::to_string_pretty(&summary.to_json())
                .map_err(|e| Error::Internal(e.to_string()))?;
            if let Err(e) = ivr_campaign::output::results::write_atomically(path, |w| {
                use std::io::Write as _;
                w.write_all((text + "\n").as_bytes()).map_err(|e| {
                    Error::Output(format!("cannot write summary {}: {e}", path.display()))
                })
            }) {
                say!("ivr-campaign: {e}");
                code = worse(code, e.exit_code());
            }
        }
    }
    if let Some(path) = &metrics_path {
        let end = metrics::RunEnd {
            campaign: &campaign,
            summary: outcome.as_ref().ok(),
            exit_code: code,
            duration: started.elapsed(),
            finished_at: jiff::Timestamp::now(),
        };
        if let Err(e) = metrics::write(path, &end) {
            say!("ivr-campaign: {e}");
            code = worse(code, e.exit_code());
        }
    }
    // An error's own line is printed by the caller, with its exit code.
    outcome.map(|_| code)
}

/// A report that could not be written turns a success into its failure; a run that already failed keeps its
/// own code, which says more.
fn worse(code: i32, report_failure: i32) -> i32 {
    if metrics::succeeded(code) {
        report_failure
    } else {
        code
    }
}

fn man(args: &ivr_campaign::cli::ManArgs) -> Result<i32, Error> {
    let cmd = <Cli as clap::CommandFactory>::command();
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .and_then(|()| clap_mangen::generate_to(cmd, dir))
                .map_err(|e| {
                    Error::Output(format!(
                        "cannot write manual pages to {}: {e}",
                        dir.display()
                    ))
                })?;
            out!("{}", dir.display());
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut page)
                .map_err(|e| Error::Internal(format!("cannot render the manual page: {e}")))?;
            use std::io::Write as _;
            let _ = std::io::stdout().write_all(&page);
        }
    }
    Ok(exit::OK)
}

async fn simulate(args: ivr_campaign::cli::SimulateArgs) -> Result<i32, Error> {
    let settings = sim_settings_from_args(&args)?;
    let listen = args
        .listen
        .clone()
        .unwrap_or_else(|| "127.0.0.1:8155".into());
    simulator::serve(&listen, settings)
        .await
        .map_err(Error::Config)?;
    Ok(exit::OK)
}
