//! What every scenario needs: the (loopback-only) target, logins over HTTP, authenticated
//! WebSockets from spread source addresses, and enough file descriptors.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use vigil_protocol::{ClientMessage, ServerMessage};

/// A WebSocket to the server.
pub type Ws = WebSocketStream<TcpStream>;

/// The server under test: always a loopback address.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://127.0.0.1:18181`, without a trailing slash.
    pub base: String,
    /// The address to connect WebSockets to.
    pub addr: SocketAddr,
}

impl Target {
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        ensure_loopback(url)?;
        let base = url.trim_end_matches('/').to_string();
        let rest = base
            .strip_prefix("http://")
            .context("the URL must start with http://")?;
        let hostport = rest.split('/').next().unwrap_or(rest);
        let hostport = hostport.replacen("localhost", "127.0.0.1", 1);
        let addr: SocketAddr = hostport
            .parse()
            .or_else(|_| format!("{hostport}:80").parse())
            .with_context(|| format!("{hostport} is not an IP address and port"))?;
        if !addr.ip().is_loopback() {
            bail!("{url} is not a loopback address");
        }
        Ok(Target { base, addr })
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/api/v1/ws", self.addr)
    }
}

pub fn ensure_loopback(url: &str) -> anyhow::Result<()> {
    let rest = url.split_once("://").map_or("", |(_, rest)| rest);
    let host = if rest.starts_with("[::1]") {
        "[::1]"
    } else {
        rest.split(['/', ':']).next().unwrap_or("")
    };
    if host == "localhost" || host.starts_with("127.") || host == "[::1]" {
        Ok(())
    } else {
        bail!("{url} is not a loopback address; vigil-load only targets servers on this machine")
    }
}

/// One login of the users file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

/// What `setup` creates and the scenarios read: the organisation, its staff and the areas.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fixture {
    pub url: String,
    pub org_id: i64,
    pub users: Vec<Credentials>,
    pub area_ids: Vec<i64>,
    pub grid: Grid,
    /// An adviser of the organisation, who sends `broadcast`'s alerts (absent in older files).
    #[serde(default)]
    pub adviser: Option<Credentials>,
    /// Staff without a password whose trackers report for them (`setup --offline`).
    #[serde(default)]
    pub offline: Vec<crate::offline::OfflineStaff>,
    /// Operators of the organisation (`setup --operators`; absent in older files).
    #[serde(default)]
    pub operators: Vec<Credentials>,
}

/// Where the areas lie: `areas` squares side by side along a band of latitude.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Grid {
    /// South edge of the band, degrees.
    pub lat_min: f64,
    /// North edge of the band.
    pub lat_max: f64,
    /// West edge of the first square.
    pub lon_min: f64,
    /// Side of a square, degrees of longitude.
    pub side: f64,
    /// Gap between squares.
    pub gap: f64,
    /// Number of squares.
    pub areas: usize,
}

impl Grid {
    /// Longitude span a device walks across (one gap before the first square and after the last).
    pub fn span(&self) -> f64 {
        self.areas as f64 * (self.side + self.gap) + self.gap
    }

    /// West end of the walk.
    pub fn west(&self) -> f64 {
        self.lon_min - self.gap
    }

    /// The square `i` as a closed ring of `[lon, lat]`.
    pub fn ring(&self, i: usize) -> Vec<[f64; 2]> {
        let w = self.lon_min + i as f64 * (self.side + self.gap);
        let e = w + self.side;
        vec![
            [w, self.lat_min],
            [e, self.lat_min],
            [e, self.lat_max],
            [w, self.lat_max],
            [w, self.lat_min],
        ]
    }
}

impl Fixture {
    pub fn read(path: &std::path::Path) -> anyhow::Result<Fixture> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("reading {} (run `vigil-load setup` first)", path.display())
        })?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

#[derive(Deserialize)]
struct Tokens {
    access_token: String,
}

/// Logs in; returns the access token.
pub async fn login(
    http: &reqwest::Client,
    target: &Target,
    email: &str,
    password: &str,
) -> anyhow::Result<String> {
    let resp = http
        .post(format!("{}/api/v1/auth/login", target.base))
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await
        .context("login request")?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        bail!("login of {email}: {status}: {body}");
    }
    Ok(resp.json::<Tokens>().await?.access_token)
}

/// Logs the first `count` users of the fixture in, `concurrency` at a time (each login is an
/// Argon2 verification on the server, tens of milliseconds of CPU).
pub async fn login_many(
    target: &Target,
    users: &[Credentials],
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<String>> {
    let count = count.min(users.len());
    if count == 0 {
        bail!("the users file holds no user");
    }
    let http = reqwest::Client::new();
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for u in users.iter().take(count).cloned() {
        let permit = limit.clone().acquire_owned().await?;
        let (http, target) = (http.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            login(&http, &target, &u.email, &u.password).await
        }));
    }
    let mut tokens = Vec::with_capacity(count);
    for (i, t) in tasks.into_iter().enumerate() {
        tokens.push(t.await??);
        if (i + 1) % 250 == 0 {
            eprintln!("  logged in {}/{count}", i + 1);
        }
    }
    eprintln!(
        "logged in {count} users in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(tokens)
}

/// Access tokens: read from `tokens_file` when given and present (written by `vigil-load login`,
/// so that the Argon2 work of logging in does not pollute the server's memory baseline), else
/// obtained by logging in the first `count` users.
pub async fn tokens(
    target: &Target,
    users: &[Credentials],
    count: usize,
    tokens_file: Option<&std::path::Path>,
) -> anyhow::Result<Vec<String>> {
    if let Some(path) = tokens_file {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("reading {} (run `vigil-load login` first)", path.display())
        })?;
        let all: Vec<String> = serde_json::from_str(&text)?;
        let n = count.min(all.len());
        if n == 0 {
            bail!("{} holds no token", path.display());
        }
        eprintln!("using {n} tokens from {}", path.display());
        return Ok(all.into_iter().take(n).collect());
    }
    login_many(target, users, count, 8).await
}

/// The `n`-th of `sources` client addresses 127.0.0.2, 127.0.0.3, …
pub fn source_addr(n: usize, sources: usize) -> IpAddr {
    let i = n % sources.clamp(1, 250);
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8))
}

/// Client buffers kept small so that tens of thousands of sockets fit in this process too.
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
}

/// `last_seq` of a client that has every message (2^53 − 1, safe in every JSON reader).
pub const CAUGHT_UP: i64 = 9_007_199_254_740_991;

/// `msg` as a WebSocket text frame.
pub fn text_frame(msg: &ClientMessage) -> Message {
    // Every field of a client message is a string, number, enum or list of those: serialising
    // cannot fail.
    Message::text(serde_json::to_string(msg).unwrap_or_default())
}

/// Opens a WebSocket from `source` (bound before connecting), says `hello` with the token
/// and waits for `welcome`.
pub async fn open_session(target: &Target, source: IpAddr, token: &str) -> anyhow::Result<Ws> {
    let socket = TcpSocket::new_v4()?;
    socket
        .bind(SocketAddr::new(source, 0))
        .with_context(|| format!("binding {source}"))?;
    let stream = socket.connect(target.addr).await.context("TCP connect")?;
    stream.set_nodelay(true)?;
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(target.ws_url(), stream, Some(client_config()))
            .await
            .context("WebSocket upgrade")?;
    // A phone that has stored everything: nothing stored by earlier runs is replayed, so each
    // run measures its own traffic only (the server caps `last_seq` at the person's current one).
    let hello = ClientMessage::Hello {
        token: Some(token.to_string()),
        last_seq: CAUGHT_UP,
    };
    ws.send(text_frame(&hello)).await?;
    let deadline = Duration::from_secs(30);
    loop {
        let frame = tokio::time::timeout(deadline, ws.next())
            .await
            .context("no welcome within 30 s")?;
        match frame {
            Some(Ok(Message::Text(t))) => {
                match serde_json::from_str::<ServerMessage>(&t)
                    .with_context(|| format!("reading {t}"))?
                {
                    ServerMessage::Welcome { .. } => return Ok(ws),
                    ServerMessage::Error { .. } => bail!("refused: {t}"),
                    _ => continue,
                }
            }
            Some(Ok(Message::Close(frame))) => bail!("closed before welcome: {frame:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("closed before welcome"),
        }
    }
}

/// Raises this process's open-file limit: the soft limit to the hard one, and both to `want`
/// if that is still short (possible as root). Returns the soft limit now in force.
#[allow(unsafe_code)]
pub fn raise_nofile(want: u64) -> anyhow::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read or write the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        bail!("getrlimit: {}", std::io::Error::last_os_error());
    }
    if lim.rlim_max < want {
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: want,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(want);
        }
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            bail!("setrlimit: {}", std::io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_a_target() {
        assert!(ensure_loopback("http://127.0.0.1:8080").is_ok());
        assert!(ensure_loopback("http://localhost:8080").is_ok());
        assert!(ensure_loopback("http://[::1]:8080").is_ok());
        assert!(ensure_loopback("http://10.0.0.5:8080").is_err());
        let t = Target::parse("http://127.0.0.1:18181/").expect("target");
        assert_eq!(t.ws_url(), "ws://127.0.0.1:18181/api/v1/ws");
        assert!(Target::parse("http://192.168.1.1:80").is_err());
    }

    #[test]
    fn sources_cycle_over_loopback() {
        assert_eq!(source_addr(0, 4).to_string(), "127.0.0.2");
        assert_eq!(source_addr(5, 4).to_string(), "127.0.0.3");
        assert!((0..1000).all(|n| source_addr(n, 1000).is_loopback()));
    }

    #[test]
    fn grid_squares_leave_gaps() {
        let g = Grid {
            lat_min: 4.80,
            lat_max: 4.82,
            lon_min: 31.50,
            side: 0.02,
            gap: 0.01,
            areas: 4,
        };
        assert_eq!(g.ring(1)[0], [31.53, 4.80]);
        assert!((g.span() - 0.13).abs() < 1e-9);
        assert!((g.west() - 31.49).abs() < 1e-9);
    }
}
