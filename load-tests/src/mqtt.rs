//! The Mosquitto peer of `broadcast`: the same fan-out through an MQTT broker, measured in the
//! same run so that Vigil's figure has an anchor.
//!
//! **One topic, every subscriber on it, one QoS 1 publish** is the fan-out that matches an
//! alert: one sender's single action reaches K devices, and the broker (like Vigil's server)
//! does the copying. Per-subscriber topics would need K publishes, i.e. the publisher doing the
//! fan-out; that is a different (and slower) test. QoS 1 both ways: the broker acknowledges the
//! publish (PUBACK) and each subscriber acknowledges its copy (PUBACK), as a device confirms an
//! alert. What the broker does not do that Vigil does: it keeps nothing per recipient (clean
//! sessions, no persistence of in-flight QoS 1 messages for offline clients), resolves no
//! geofence, and writes no ledger; so it is a lower bound for the transport.
//!
//! Clients are written on `rumqttc`'s MQTT 3.1.1 packet codec (its `v4::Codec`) over our own
//! sockets, because the crate's client cannot bind a source address and tens of thousands of
//! subscribers need the 127.0.0.x spread (see `client::source_addr`). Subscribers use clean
//! sessions and no keep-alive (the phase is short); nothing is retained: the publishes are not
//! retained, and at the end an empty retained publish clears the topic anyway, then a fresh
//! subscriber checks that no retained message is left.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    Codec, ConnAck, Connect, ConnectReturnCode, Packet, PubAck, Publish, SubAck, Subscribe,
    SubscribeReasonCode,
};
use serde::Serialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::codec::Framed;

use crate::stats::{LatencyMs, ServerProbe, cpu_percent, summarize};

/// An MQTT connection.
type Mqtt = Framed<TcpStream, Codec>;

/// Largest packet either side sends.
const MAX_PACKET: usize = 1 << 20;

/// Options of the peer phase.
#[derive(Debug, Clone)]
pub struct MqttOpts {
    /// The broker, e.g. 127.0.0.1:1883 (loopback only).
    pub broker: SocketAddr,
    /// Subscribers (the K devices of the Vigil phase).
    pub subscribers: usize,
    /// Publishes (one per Vigil alert).
    pub rounds: usize,
    /// The payload: a copy of the frame Vigil's devices received, so the sizes match.
    pub payload: Vec<u8>,
    /// Source addresses to spread subscribers over, from `first_source` on.
    pub sources: usize,
    /// Index of the first source address (after the ones the WebSockets used).
    pub first_source: usize,
    /// Connections being set up at once (Mosquitto's listen backlog is 100).
    pub concurrency: usize,
    /// Pause between publishes.
    pub pause: Duration,
    /// Longest wait for every subscriber to receive one publish.
    pub round_timeout: Duration,
    /// Run name (topic and client ids).
    pub run_id: String,
    /// The broker's process, for its RSS and CPU.
    pub broker_probe: ServerProbe,
}

/// One publish.
#[derive(Debug, Serialize, Clone)]
pub struct MqttRound {
    pub round: usize,
    /// Publish → the broker's PUBACK.
    pub puback_ms: Option<f64>,
    pub received: usize,
    pub missing: usize,
    pub duplicates: usize,
    /// Publish start → each subscriber's receipt of its copy.
    pub delivery_ms: LatencyMs,
    /// Publish start → the last subscriber's receipt.
    pub all_received_ms: Option<f64>,
    pub broker_cpu_percent: Option<f64>,
    pub client_cpu_percent: Option<f64>,
}

/// The peer's report.
#[derive(Debug, Serialize, Clone)]
pub struct MqttReport {
    pub broker: String,
    pub topic: String,
    pub qos: u8,
    pub payload_bytes: usize,
    pub subscribers_requested: usize,
    pub subscribers_connected: usize,
    pub connect_secs: f64,
    pub errors: usize,
    pub first_errors: Vec<String>,
    pub rounds: Vec<MqttRound>,
    /// Every receipt of every round.
    pub delivery_ms: LatencyMs,
    pub broker_rss_before_kib: Option<u64>,
    pub broker_rss_subscribed_kib: Option<u64>,
    /// Whether a retained message was found on the topic after clean-up (must be false).
    pub retained_left: bool,
}

/// Opens an MQTT 3.1.1 session from `source` with a clean session and no keep-alive.
async fn open(broker: SocketAddr, source: IpAddr, client_id: String) -> anyhow::Result<Mqtt> {
    let socket = TcpSocket::new_v4()?;
    socket
        .bind(SocketAddr::new(source, 0))
        .with_context(|| format!("binding {source}"))?;
    let stream = socket.connect(broker).await.context("TCP connect")?;
    stream.set_nodelay(true)?;
    let codec = Codec {
        max_incoming_size: MAX_PACKET,
        max_outgoing_size: MAX_PACKET,
    };
    let mut conn = Framed::with_capacity(stream, codec, 2048);
    let mut connect = Connect::new(client_id);
    connect.keep_alive = 0;
    connect.clean_session = true;
    conn.send(Packet::Connect(connect)).await?;
    match expect(&mut conn).await? {
        Packet::ConnAck(ConnAck {
            code: ConnectReturnCode::Success,
            ..
        }) => Ok(conn),
        other => bail!("refused: {other:?}"),
    }
}

/// The next packet, within 30 s.
async fn expect(conn: &mut Mqtt) -> anyhow::Result<Packet> {
    match tokio::time::timeout(Duration::from_secs(30), conn.next()).await {
        Err(_) => bail!("no answer from the broker within 30 s"),
        Ok(None) => bail!("the broker closed the connection"),
        Ok(Some(p)) => Ok(p?),
    }
}

async fn subscribe(conn: &mut Mqtt, topic: &str) -> anyhow::Result<()> {
    let mut sub = Subscribe::new(topic, QoS::AtLeastOnce);
    sub.pkid = 1;
    conn.send(Packet::Subscribe(sub)).await?;
    match expect(conn).await? {
        Packet::SubAck(SubAck { return_codes, .. })
            if matches!(return_codes.first(), Some(SubscribeReasonCode::Success(_))) =>
        {
            Ok(())
        }
        other => bail!("subscription refused: {other:?}"),
    }
}

/// The round number a publish carries in its first 8 bytes.
fn round_of(payload: &[u8]) -> Option<usize> {
    std::str::from_utf8(payload.get(..8)?).ok()?.parse().ok()
}

/// The payload of round `r`: the template with its first 8 bytes replaced by the round.
fn payload_for(template: &[u8], r: usize) -> Vec<u8> {
    let mut p = template.to_vec();
    if p.len() < 8 {
        p.resize(8, b' ');
    }
    p[..8].copy_from_slice(format!("{r:08}").as_bytes());
    p
}

#[derive(Debug)]
struct Got {
    sub: usize,
    round: usize,
    at: Instant,
}

/// Reads copies until told to stop, acknowledging each (QoS 1).
async fn subscriber(
    sub: usize,
    mut conn: Mqtt,
    tx: mpsc::UnboundedSender<Got>,
    mut stop: watch::Receiver<bool>,
    errors: Arc<AtomicUsize>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            packet = conn.next() => match packet {
                Some(Ok(Packet::Publish(p))) => {
                    let at = Instant::now();
                    if p.qos == QoS::AtLeastOnce && conn.send(Packet::PubAck(PubAck::new(p.pkid))).await.is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    if let Some(round) = round_of(&p.payload) {
                        let _ = tx.send(Got { sub, round, at });
                    }
                }
                Some(Ok(_)) => {}
                _ => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
        }
    }
    let _ = conn.send(Packet::Disconnect).await;
}

/// Connects the subscribers, publishes `rounds` times and measures each fan-out; cleans up.
pub async fn run(o: MqttOpts) -> anyhow::Result<MqttReport> {
    if !o.broker.ip().is_loopback() {
        bail!("{} is not a loopback address", o.broker);
    }
    let topic = format!("vigil-load/{}/alerts", o.run_id);
    let sources = o.sources.clamp(1, 124);
    let source = |i: usize| crate::client::source_addr(o.first_source + i % sources, 250);
    eprintln!(
        "mqtt peer: {} subscribers to {topic} on {} (QoS 1), from {} addresses from {}",
        o.subscribers,
        o.broker,
        sources,
        source(0)
    );
    let broker_before = o.broker_probe.sample();

    let started = Instant::now();
    let limit = Arc::new(Semaphore::new(o.concurrency.max(1)));
    let mut opening = Vec::with_capacity(o.subscribers);
    for i in 0..o.subscribers {
        let permit = limit.clone().acquire_owned().await?;
        let (broker, src, topic) = (o.broker, source(i), topic.clone());
        let id = format!("vl-{}-{i}", o.run_id);
        opening.push(tokio::spawn(async move {
            let _permit = permit;
            let mut conn = open(broker, src, id).await?;
            subscribe(&mut conn, &topic).await?;
            anyhow::Ok(conn)
        }));
    }
    let mut conns = Vec::with_capacity(o.subscribers);
    let mut first_errors = Vec::new();
    let mut errors = 0;
    for (i, t) in opening.into_iter().enumerate() {
        match t.await? {
            Ok(c) => conns.push(c),
            Err(e) => {
                errors += 1;
                if first_errors.len() < 5 {
                    first_errors.push(format!("subscriber {i}: {e:#}"));
                }
            }
        }
        if (i + 1) % 5000 == 0 {
            eprintln!("  {}/{} subscribers connected", i + 1, o.subscribers);
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let connected = conns.len();
    eprintln!("{connected} subscribers connected in {connect_secs:.1} s");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let broker_subscribed = o.broker_probe.sample();

    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let sub_errors = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            tokio::spawn(subscriber(
                i,
                c,
                tx.clone(),
                stop_rx.clone(),
                sub_errors.clone(),
            ))
        })
        .collect();
    drop(tx);

    let mut publisher = open(o.broker, source(connected), format!("vl-{}-pub", o.run_id)).await?;
    let client = ServerProbe {
        pid: Some(std::process::id()),
    };
    let mut rounds = Vec::with_capacity(o.rounds);
    let mut all_samples = Vec::new();
    for r in 1..=o.rounds {
        let mut got: Vec<Option<Instant>> = vec![None; connected];
        let (mut received, mut duplicates) = (0usize, 0usize);
        let (b0, c0) = (o.broker_probe.sample(), client.sample());
        let mut publish = Publish::new(&topic, QoS::AtLeastOnce, payload_for(&o.payload, r));
        publish.pkid = u16::try_from(r % 60_000 + 1).unwrap_or(1);
        let t0 = Instant::now();
        publisher.send(Packet::Publish(publish)).await?;
        let mut puback = None;
        let deadline = tokio::time::Instant::from(t0 + o.round_timeout);
        while received < connected || puback.is_none() {
            tokio::select! {
                g = rx.recv() => match g {
                    Some(g) if g.round == r => match &mut got[g.sub] {
                        Some(_) => duplicates += 1,
                        slot => { *slot = Some(g.at); received += 1; }
                    },
                    Some(_) => {}
                    None => break,
                },
                p = publisher.next(), if puback.is_none() => match p {
                    Some(Ok(Packet::PubAck(_))) => puback = Some(t0.elapsed()),
                    Some(Ok(_)) => {}
                    _ => bail!("the broker closed the publisher's connection"),
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        let (b1, c1) = (o.broker_probe.sample(), client.sample());
        let mut samples: Vec<Duration> = got.iter().flatten().map(|at| *at - t0).collect();
        all_samples.extend_from_slice(&samples);
        let s = summarize(&mut samples);
        let round = MqttRound {
            round: r,
            puback_ms: puback.map(ms),
            received,
            missing: connected - received,
            duplicates,
            delivery_ms: s.map(LatencyMs::from).unwrap_or_default(),
            all_received_ms: (received == connected)
                .then(|| s.map(|s| ms(s.max)))
                .flatten(),
            broker_cpu_percent: cpu_percent(&b0, &b1),
            client_cpu_percent: cpu_percent(&c0, &c1),
        };
        eprintln!(
            "  mqtt publish {r}/{}: {received}/{connected} received, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; PUBACK after {}",
            o.rounds,
            round.delivery_ms.p50,
            round.delivery_ms.p99,
            round.delivery_ms.max,
            round
                .puback_ms
                .map_or_else(|| "—".into(), |m| format!("{m:.1} ms"))
        );
        rounds.push(round);
        if r < o.rounds {
            tokio::time::sleep(o.pause).await;
        }
    }

    // Clean up: subscribers disconnect; an empty retained publish clears the topic (a no-op
    // unless something retained a message there); then a fresh subscriber checks.
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let mut clear = Publish::new(&topic, QoS::AtLeastOnce, Vec::<u8>::new());
    clear.retain = true;
    clear.pkid = 60_001;
    publisher.send(Packet::Publish(clear)).await?;
    while !matches!(expect(&mut publisher).await?, Packet::PubAck(_)) {}
    let _ = publisher.send(Packet::Disconnect).await;
    let retained_left = retained_message(o.broker, &topic, &o.run_id).await?;
    errors += sub_errors.load(Ordering::Relaxed);

    let report = MqttReport {
        broker: o.broker.to_string(),
        topic,
        qos: 1,
        payload_bytes: payload_for(&o.payload, 0).len(),
        subscribers_requested: o.subscribers,
        subscribers_connected: connected,
        connect_secs,
        errors,
        first_errors,
        rounds,
        delivery_ms: summarize(&mut all_samples)
            .map(LatencyMs::from)
            .unwrap_or_default(),
        broker_rss_before_kib: broker_before.rss_kib,
        broker_rss_subscribed_kib: broker_subscribed.rss_kib,
        retained_left,
    };
    Ok(report)
}

/// Whether the broker hands a retained message on `topic` to a new subscriber within 500 ms.
pub async fn retained_message(
    broker: SocketAddr,
    topic: &str,
    run_id: &str,
) -> anyhow::Result<bool> {
    let mut check = open(
        broker,
        IpAddr::from([127, 0, 0, 1]),
        format!("vl-{run_id}-check"),
    )
    .await?;
    subscribe(&mut check, topic).await?;
    let found = matches!(
        tokio::time::timeout(Duration::from_millis(500), check.next()).await,
        Ok(Some(Ok(Packet::Publish(_))))
    );
    let _ = check.send(Packet::Disconnect).await;
    Ok(found)
}

/// Whether a broker answers an MQTT CONNECT at `broker` within 2 s.
pub async fn broker_answers(broker: SocketAddr) -> bool {
    let probe = open(
        broker,
        IpAddr::from([127, 0, 0, 1]),
        format!("vl-probe-{}", std::process::id()),
    );
    match tokio::time::timeout(Duration::from_secs(2), probe).await {
        Ok(Ok(mut c)) => {
            let _ = c.send(Packet::Disconnect).await;
            true
        }
        _ => false,
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_ride_in_the_payload_without_changing_its_size() {
        let template = br#"{"type":"message","kind":"alert","seq":12,"payload":{}}"#;
        let p = payload_for(template, 3);
        assert_eq!(p.len(), template.len());
        assert_eq!(round_of(&p), Some(3));
        assert_eq!(round_of(b"short"), None);
        assert_eq!(payload_for(b"ab", 7).len(), 8);
    }
}
