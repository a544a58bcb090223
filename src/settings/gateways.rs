//! The campaign's gateways: their URLs (checked strictly, one spelling each), keys, lines, own rates,
//! credentials and CA certificates.

use std::path::{Path, PathBuf};

use super::file::{GatewayTable, SimulatorTable};
use super::simulator::sim_settings;
use super::values::{positive_u32, relative_to};
use crate::error::{Error, Result};
use crate::simulator::SimSettings;
use crate::types::{Rate, Secret};

/// Where the calls go.
#[derive(Debug, Clone)]
pub enum GatewayTarget {
    Url(reqwest::Url),
    /// Start the simulator in-process on a free loopback port.
    Simulator(Box<SimSettings>),
}

/// One gateway of a campaign.
#[derive(Debug, Clone)]
pub struct GatewaySpec {
    pub target: GatewayTarget,
    /// How the journal, the results and the logs name it: the URL without credentials (and without a lone
    /// trailing `/`), or `sim`, `sim-2`, … for simulators in the order listed.
    pub key: String,
    /// Its lines: the most calls outstanding on it.
    pub lines: u32,
    /// Its own cap on call requests, besides the campaign's total `rate`.
    pub rate: Option<Rate>,
    /// Extra CA certificate (PEM) to trust for an https gateway, e.g. a proxy with an internal CA.
    pub ca_cert: Option<PathBuf>,
    /// Basic-auth user and password for a gateway behind a proxy.
    pub auth: Option<(String, Secret)>,
}

/// `http://user:secret@host` → `http://***@host`, for messages.
pub(super) fn redact_userinfo(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &text[..s + 3], &text[at..]),
        (None, Some(at)) => format!("***{}", &text[at..]),
        _ => text.to_string(),
    }
}

/// What the flags and the file say about gateways, taken out before the rest is read.
pub(super) struct GatewayInputs {
    pub(super) flags: Vec<String>,
    pub(super) one: Option<String>,
    pub(super) list: Option<Vec<GatewayTable>>,
    pub(super) simulator: Option<SimulatorTable>,
    /// (flag, file) pairs of the campaign-wide defaults.
    pub(super) user: (Option<String>, Option<String>),
    pub(super) password_env: (Option<String>, Option<String>),
    pub(super) ca_cert: (Option<PathBuf>, Option<PathBuf>),
}

/// The campaign's gateways: `--gateway` flags (which replace the file's), else `[[gateways]]`, else
/// `gateway`, else the default local gateway. Each takes the campaign's lines, credentials and CA
/// certificate unless its `[[gateways]]` entry sets its own.
pub(super) fn gateways_of(
    g: &mut GatewayInputs,
    base: Option<&Path>,
    lines: u32,
    total: &Rate,
) -> Result<Vec<GatewaySpec>> {
    let file_user = g.user.1.take();
    let file_env = g.password_env.1.take();
    let file_ca = g.ca_cert.1.take().map(|p| relative_to(base, p));
    let campaign_user = g.user.0.take().or(file_user);
    let campaign_env = g.password_env.0.take().or(file_env);
    let campaign_ca = g.ca_cert.0.take().or(file_ca);
    struct Entry {
        url: String,
        what: String,
        lines: Option<i64>,
        rate: Option<String>,
        user: Option<String>,
        env: Option<String>,
        ca: Option<PathBuf>,
    }
    let plain = |url: String, what: String| Entry {
        url,
        what,
        lines: None,
        rate: None,
        user: None,
        env: None,
        ca: None,
    };
    let entries: Vec<Entry> = if !g.flags.is_empty() {
        g.flags
            .drain(..)
            .map(|u| plain(u, "--gateway".into()))
            .collect()
    } else {
        match (g.one.take(), g.list.take()) {
            (Some(_), Some(_)) => {
                return Err(Error::Config(
                    "campaign file: give either `gateway` or `[[gateways]]`, not both".into(),
                ));
            }
            (Some(u), None) => vec![plain(u, "campaign key gateway".into())],
            (None, Some(list)) if list.is_empty() => {
                return Err(Error::Config(
                    "campaign file: `gateways` lists no gateway".into(),
                ));
            }
            (None, Some(list)) => list
                .into_iter()
                .enumerate()
                .map(|(i, t)| Entry {
                    url: t.url,
                    what: format!("campaign key gateways[{}].url", i + 1),
                    lines: t.lines,
                    rate: t.rate,
                    user: t.gateway_user,
                    env: t.gateway_password_env,
                    ca: t.ca_cert.map(|p| relative_to(base, p)),
                })
                .collect(),
            (None, None) => vec![plain(
                "http://localhost:8155".into(),
                "the default gateway".into(),
            )],
        }
    };
    let mut out: Vec<GatewaySpec> = Vec::with_capacity(entries.len());
    let mut sims = 0;
    for e in entries {
        let (target, key) = if e.url.trim().eq_ignore_ascii_case("sim") {
            sims += 1;
            let mut settings = sim_settings(g.simulator.clone().unwrap_or_default(), base)?;
            if sims > 1 {
                // Each simulator records to its own file.
                settings.record = settings.record.map(|p| {
                    let mut name = p.clone().into_os_string();
                    name.push(format!(".sim-{sims}"));
                    PathBuf::from(name)
                });
            }
            let key = if sims == 1 {
                "sim".to_string()
            } else {
                format!("sim-{sims}")
            };
            (GatewayTarget::Simulator(Box::new(settings)), key)
        } else {
            let url = parse_gateway_url(&e.url)
                .map_err(|err| Error::Usage(format!("{}: {err}", e.what)))?;
            let key = gateway_key(&url);
            (GatewayTarget::Url(url), key)
        };
        if out.iter().any(|o| o.key == key) {
            return Err(Error::Usage(format!(
                "{}: gateway {key} is listed twice (each gateway once; its lines say how many calls it takes)",
                e.what
            )));
        }
        let entry_lines = match e.lines {
            None => lines,
            Some(n) => positive_u32(n, &format!("{}: lines", e.what.trim_end_matches(".url")))?,
        };
        let rate = e
            .rate
            .map(|r| {
                r.parse::<Rate>().map_err(|err| {
                    Error::Usage(format!("{}: rate: {err}", e.what.trim_end_matches(".url")))
                })
            })
            .transpose()?
            // A gateway's own rate above the campaign's total changes nothing.
            .filter(|r| r.interval() > total.interval());
        let url_user = match &target {
            GatewayTarget::Url(u) if !u.username().is_empty() => Some(u.username().to_string()),
            _ => None,
        };
        let user = e.user.or_else(|| campaign_user.clone()).or(url_user);
        let env = e
            .env
            .or_else(|| campaign_env.clone())
            .unwrap_or_else(|| "IVR_GATEWAY_PASSWORD".into());
        let auth = match user {
            None => None,
            Some(user) => {
                let password = std::env::var(&env).map_err(|_| {
                    Error::Usage(format!(
                        "gateway {key}: user {user:?} is set but the environment variable {env} (its password) is not"
                    ))
                })?;
                Some((user, Secret(password)))
            }
        };
        out.push(GatewaySpec {
            target,
            key,
            lines: entry_lines,
            rate,
            ca_cert: e.ca.or_else(|| campaign_ca.clone()),
            auth,
        });
    }
    Ok(out)
}

/// How a gateway URL is named in the journal and the results: without credentials, and without the lone
/// `/` a URL with no path gets.
pub fn gateway_key(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    let text = u.to_string();
    match text.strip_suffix('/') {
        Some(t) if u.path() == "/" && u.query().is_none() => t.to_string(),
        _ => text,
    }
}

/// A gateway's key from what an operator typed: a URL (credentials ignored), or `sim`, `sim-2`, ….
pub fn gateway_key_of(text: &str) -> std::result::Result<String, String> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    if lower == "sim"
        || lower
            .strip_prefix("sim-")
            .is_some_and(|n| n.parse::<u32>().is_ok())
    {
        return Ok(lower);
    }
    parse_gateway_url(t).map(|u| gateway_key(&u))
}

/// Accepts `http://host:port[/prefix]` (and a bare `host:port`, taken as http).
pub fn parse_gateway_url(text: &str) -> Result<reqwest::Url, String> {
    let t = text.trim();
    // URL rules forgive `http:/x` and backslashes (the host becomes `http`, or `x`): for a gateway they are
    // typos, and the run would wait out max-outage on a host that is not there.
    let lower = t.to_ascii_lowercase();
    let scheme_typo = ["http:", "https:"]
        .iter()
        .any(|s| lower.starts_with(s) && !lower[s.len()..].starts_with("//"));
    if t.contains('\\') || scheme_typo {
        return Err(format!(
            "{:?} is not a gateway URL; write it like http://10.0.0.5:8155",
            redact_userinfo(text)
        ));
    }
    let with_scheme = if t.contains("://") {
        t.to_string()
    } else {
        format!("http://{t}")
    };
    let url = reqwest::Url::parse(&with_scheme)
        .map_err(|e| format!("{:?} is not a gateway URL ({e})", redact_userinfo(text)))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("{:?}: use http:// or https://", url.scheme()));
    }
    if t.chars().any(char::is_whitespace) {
        return Err(format!(
            "{:?} is not a gateway URL (it contains a space)",
            redact_userinfo(text)
        ));
    }
    // `http:///x` is read by URL rules as the host `x`: a slash too many is a typo, not a host.
    let after_scheme = with_scheme.split_once("://").map_or("", |(_, rest)| rest);
    if url.host_str().is_none_or(str::is_empty) || after_scheme.starts_with('/') {
        return Err(format!("{:?} has no host", redact_userinfo(text)));
    }
    if url.port() == Some(0) {
        return Err(format!(
            "{:?}: port 0 is not a port a gateway listens on",
            redact_userinfo(text)
        ));
    }
    if let Some(name) = url.domain().filter(|name| !is_host_name(name)) {
        return Err(format!(
            "{:?} is not a gateway URL ({name:?} is not a host name or address)",
            redact_userinfo(text)
        ));
    }
    if url.password().is_some() {
        // Never echo it: the message names the problem, not the secret.
        return Err("the gateway URL holds a password; give the user with --gateway-user and the password in IVR_GATEWAY_PASSWORD".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        // The handlers' paths are appended to the base: a query or fragment there means nothing, and two
        // spellings of one gateway would count its lines twice.
        return Err(format!(
            "{:?} has a query or fragment (`?…`, `#…`); give the gateway's base URL, e.g. http://10.0.0.5:8155",
            redact_userinfo(text)
        ));
    }
    Ok(canonical(url))
}

/// One spelling per gateway, so a gateway listed twice is seen as one: no trailing slashes on a path
/// prefix, and an IPv4 address written as IPv6 (`[::ffff:127.0.0.1]`) as IPv4.
pub(super) fn canonical(mut url: reqwest::Url) -> reqwest::Url {
    if let Some(std::net::IpAddr::V6(v6)) = url
        .host_str()
        .and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse().ok())
        && let Some(v4) = v6.to_ipv4_mapped()
    {
        let _ = url.set_ip_host(std::net::IpAddr::V4(v4));
    }
    let trimmed = url.path().trim_end_matches('/').to_string();
    url.set_path(if trimmed.is_empty() { "/" } else { &trimmed });
    url
}

/// A host name as DNS takes it (RFC 1123 labels, after IDNA): without this check a typo such as `ht!tp:/x`
/// becomes the host `ht!tp`, and the run waits out `max-outage` on lookups that can never succeed.
pub(super) fn is_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                // `_` is not in RFC 1123, but Windows networks name hosts with it and resolvers pass it.
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}
