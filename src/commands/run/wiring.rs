//! The run's parts built from its settings: the engine's slice, the gateways' clients (and simulators), the
//! rules with their lists and ledger, and what is owed to gateways no longer listed.

use super::*;

/// The engine's slice of the settings.
pub fn engine_settings(
    cfg: &RunConfig,
    campaign_id: String,
    clock: Clock,
    journal_path: Option<std::path::PathBuf>,
    request: Arc<Request>,
) -> engine::Settings {
    engine::Settings {
        app: cfg.call.app.clone(),
        campaign_id,
        firstocc: cfg.call.firstocc,
        call_length: cfg.call.call_length,
        rate: cfg.pacing.rate,
        gateways: cfg
            .gateways
            .iter()
            .map(|g| engine::GatewayPlan {
                key: g.key.clone(),
                lines: g.lines,
                rate: g.rate.unwrap_or(crate::types::Rate::Unlimited),
            })
            .collect(),
        poll_interval: cfg.pacing.poll_interval,
        poll_rate: cfg.pacing.poll_rate,
        poll_timeout: cfg.pacing.poll_timeout,
        keep_records: cfg.call.keep_records,
        request_retries: cfg.pacing.request_retries,
        drain_timeout: cfg.pacing.drain_timeout,
        max_outage: cfg.pacing.max_outage,
        request_timeout: cfg.pacing.request_timeout,
        wait_for_window: cfg.rules.wait_for_window,
        steady: engine::Steady::from_wall(&clock),
        written_floor_ms: i64::MIN,
        clock,
        journal_path,
        recall: cfg.recall.clone(),
        request,
        reminders: cfg.reminders.clone().map(Arc::new),
    }
}

/// The clients of the campaign's gateways, and the simulators behind those that are `sim`.
pub async fn gateways_for(cfg: &RunConfig) -> Result<(Vec<Gateway>, Vec<Simulator>)> {
    let mut clients = Vec::with_capacity(cfg.gateways.len());
    let mut simulators = Vec::new();
    let mut reached: Vec<(String, String, Vec<std::net::SocketAddr>)> = Vec::new();
    for g in &cfg.gateways {
        let base = match &g.target {
            GatewayTarget::Simulator(settings) => {
                let sim = Simulator::start_with("127.0.0.1:0", (**settings).clone())
                    .await
                    .map_err(Error::Config)?;
                let url =
                    reqwest::Url::parse(&sim.url()).map_err(|e| Error::Internal(e.to_string()))?;
                info!(gateway = %g.key, url = %url, "using the built-in gateway simulator");
                simulators.push(sim);
                url
            }
            GatewayTarget::Url(u) => {
                let addrs = resolve(u).await;
                if let Some(other) = reached
                    .iter()
                    .find(|(_, path, a)| *path == u.path() && a.iter().any(|x| addrs.contains(x)))
                {
                    // Not refused: two names on one address may be two virtual hosts behind one proxy.
                    warn!(
                        "gateways {} and {} reach the same address and path; if they are one gateway, list it once (its lines are counted for each listing)",
                        other.0, g.key
                    );
                }
                reached.push((g.key.clone(), u.path().to_string(), addrs));
                u.clone()
            }
        };
        clients.push(client_for(cfg, g, base)?);
    }
    Ok((clients, simulators))
}

/// The client for one gateway, its CA certificate read and checked (the dry run builds one too, so a
/// missing certificate fails there first).
pub fn client_for(
    cfg: &RunConfig,
    g: &crate::settings::GatewaySpec,
    base: reqwest::Url,
) -> Result<Gateway> {
    let ca_pem = match &g.ca_cert {
        Some(p) => Some(std::fs::read(p).map_err(|e| {
            Error::NoInput(format!("cannot read CA certificate {}: {e}", p.display()))
        })?),
        None => None,
    };
    Gateway::new(
        base,
        cfg.pacing.request_timeout,
        g.auth.clone(),
        ca_pem.as_deref(),
    )
    .map_err(Error::Config)
}

/// The addresses a gateway URL reaches, saying plainly, once at the start, when its name does not resolve:
/// otherwise the first sign is a stream of generic "not reached" warnings until `max-outage`. Only a warning:
/// the name may come back (a DNS server restarting), and the breaker then carries on as for any outage.
pub(super) async fn resolve(url: &reqwest::Url) -> Vec<std::net::SocketAddr> {
    let port = url.port_or_known_default().unwrap_or(80);
    let Some(host) = url.domain() else {
        let ip = url
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
            .and_then(|h| h.parse::<std::net::IpAddr>().ok());
        return ip
            .map(|ip| std::net::SocketAddr::new(ip, port))
            .into_iter()
            .collect();
    };
    // Through a proxy the proxy resolves the name; a local lookup says nothing.
    let proxied = ["http_proxy", "https_proxy", "all_proxy"].iter().any(|v| {
        std::env::var_os(v).is_some() || std::env::var_os(v.to_ascii_uppercase()).is_some()
    });
    if proxied {
        return Vec::new();
    }
    let lookup = tokio::net::lookup_host((host, port));
    let why = match tokio::time::timeout(std::time::Duration::from_secs(5), lookup).await {
        Ok(Ok(addrs)) => {
            let addrs: Vec<std::net::SocketAddr> = addrs.map(unmapped).collect();
            if !addrs.is_empty() {
                return addrs;
            }
            "no address".to_string()
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer from the resolver in 5s".to_string(),
    };
    warn!(
        gateway = %url,
        "cannot resolve gateway host {host} ({why}); call requests wait for it, up to max-outage"
    );
    Vec::new()
}

/// `[::ffff:127.0.0.1]:80` as `127.0.0.1:80`, so one address compares equal however it was reached.
pub(super) fn unmapped(a: std::net::SocketAddr) -> std::net::SocketAddr {
    match a.ip() {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, |v4| {
            std::net::SocketAddr::new(std::net::IpAddr::V4(v4), a.port())
        }),
        _ => a,
    }
}

/// Calls open on a gateway the campaign no longer lists are refused, unless the operator forgets that
/// gateway: asking another gateway about them is meaningless, and calling them again could call someone twice.
pub(super) async fn settle_unlisted_gateways(
    journal: &crate::store::Journal,
    cfg: &RunConfig,
) -> Result<()> {
    let listed = |k: &str| cfg.gateways.iter().any(|g| g.key == k);
    if let Some(k) = cfg.forget_gateways.iter().find(|k| listed(k)) {
        return Err(Error::Usage(format!(
            "--forget-gateway {k}: this run lists that gateway, and its calls are polled there; forget only a gateway you no longer list"
        )));
    }
    let mut forgotten_keys: Vec<String> = Vec::new();
    for (gateway, n) in journal.open_by_gateway().await? {
        // Journals from before gateways were recorded had one: the first listed now.
        let Some(key) = gateway else { continue };
        if listed(&key) {
            continue;
        }
        if cfg.forget_gateways.contains(&key) {
            forgotten_keys.push(key.clone());
            let forgotten = journal.forget_gateway(key.clone()).await?;
            warn!(
                gateway = %key,
                contacts = forgotten,
                "calls open on a gateway no longer listed were written off as unknown (--forget-gateway); check that gateway before calling any of them again"
            );
            continue;
        }
        return Err(Error::Config(format!(
            "{n} calls are still open on gateway {key}, which this run does not list: list it again to finish them, or give --forget-gateway {key} to write them off as unknown (check that gateway first: they may have been called)"
        )));
    }
    for k in cfg
        .forget_gateways
        .iter()
        .filter(|k| !forgotten_keys.contains(k))
    {
        warn!(gateway = %k, "--forget-gateway {k}: this journal has no open calls on it; nothing was forgotten (check the spelling)");
    }
    Ok(())
}

/// The rules of the settings, with the suppression lists and the ledger loaded.
pub fn rules_for(cfg: &RunConfig, ledger_must_exist: bool) -> Result<Rules> {
    let suppressed = suppress::load(&cfg.rules.suppress, cfg.rules.suppress_region)?;
    let ledger = match cfg.rules.cap {
        Some((cap, per)) if !ledger_must_exist || cfg.files.ledger.exists() => {
            Some(Ledger::open(&cfg.files.ledger, cap, per)?)
        }
        _ => None,
    };
    Ok(Rules::new(
        cfg.rules.window.clone(),
        cfg.rules
            .timezone
            .clone()
            .zip(cfg.rules.timezone_name.clone()),
        suppressed,
        ledger,
    ))
}
