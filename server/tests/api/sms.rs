//! SMS: the server, configured for Twilio or for a generic HTTP gateway, sends texts to the
//! fake gateway, which checks credentials and fields the way the real ones do.

use std::time::Duration;

use serde_json::json;
use vigil_server::Settings;
use vigil_server::config::SmsProvider;
use vigil_server::sms::{Sms, SmsEncoding, SmsError, segments};

use crate::fakes::{FakeSmsGateway, SMS_FROM, SmsVia, TWILIO_SID, TWILIO_TOKEN};
use crate::support::{Backend, TestServer};

const ALERT: &str =
    "Vigil: évacuation immédiate du quartier nord. Rendez-vous au point B. Répondez OK.";

fn gateway(configure: impl FnOnce(&mut Settings)) -> Sms {
    let mut settings = Settings::default();
    configure(&mut settings);
    Sms::from_settings(&settings).expect("valid SMS settings")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_texts_through_twilio_with_basic_auth_and_form_fields() {
    let fake = FakeSmsGateway::start().await;
    let srv = TestServer::start_with(Backend::Sqlite, |s| fake.twilio(s))
        .await
        .expect("server");
    assert_eq!(srv.state.sms.provider(), SmsProvider::Twilio);

    let sent = srv
        .state
        .sms
        .send("+254 700-000-001", ALERT)
        .await
        .expect("sent");
    assert_eq!(sent.segments, segments(ALERT));
    assert_eq!(sent.segments.encoding, SmsEncoding::Gsm7);
    let got = fake.received();
    assert_eq!(got.len(), 1);
    let text = &got[0];
    assert_eq!(text.via, SmsVia::Twilio);
    assert_eq!(
        text.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{TWILIO_SID}:{TWILIO_TOKEN}"),
    );
    assert_eq!(
        text.authorization.as_deref(),
        Some(format!("Basic {basic}").as_str())
    );
    assert_eq!(
        (text.to.as_str(), text.from.as_str(), text.text.as_str()),
        ("+254700000001", SMS_FROM, ALERT)
    );
    assert_eq!(
        text.body,
        json!({"To": "+254700000001", "From": SMS_FROM, "Body": ALERT})
    );
    let sid = sent.provider_id.expect("Twilio's message sid");
    assert!(sid.starts_with("SM") && sid.len() == 34, "{sid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_messaging_service_sends_as_itself() {
    let fake = FakeSmsGateway::start().await;
    let service = "MG0123456789abcdef0123456789abcdef";
    let sms = gateway(|s| {
        fake.twilio(s);
        s.sms_from = service.into();
    });
    sms.send("+211900000002", "Roll call: are you safe? Reply 1 for yes.")
        .await
        .expect("sent");
    let got = fake.received();
    assert_eq!(got[0].body["MessagingServiceSid"], service);
    assert!(got[0].body.get("From").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generic_gateway_gets_the_json_template_filled_and_the_bearer_token() {
    let fake = FakeSmsGateway::start().await;
    let srv = TestServer::start_with(Backend::Sqlite, |s| fake.generic_json(s))
        .await
        .expect("server");
    // Quotes, braces, an ampersand and Arabic travel intact inside the JSON.
    let tricky = "Say \"OK\" {to} & stay — ابقوا في الداخل 🙏";
    let sent = srv
        .state
        .sms
        .send("+252610000003", tricky)
        .await
        .expect("sent");
    assert_eq!(sent.provider_id.as_deref(), Some("gen-1"));
    assert_eq!(sent.segments.encoding, SmsEncoding::Ucs2);
    let got = fake.received();
    assert_eq!(got.len(), 1);
    let text = &got[0];
    assert_eq!((text.via, text.method.as_str()), (SmsVia::Generic, "POST"));
    assert_eq!(text.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        text.authorization.as_deref(),
        Some("Bearer fake-generic-api-key")
    );
    assert_eq!(
        text.body,
        json!({"recipient": {"msisdn": "+252610000003"}, "sender": SMS_FROM, "message": tricky, "channel": "sms"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generic_gateway_takes_form_posts_and_kannel_style_gets() {
    let fake = FakeSmsGateway::start().await;
    for method in ["POST", "GET"] {
        let sms = gateway(|s| fake.generic_form(s, method));
        sms.send(
            "+254700000004",
            "Curfew from 18:00 & roads closed = stay put",
        )
        .await
        .expect("sent");
    }
    let got = fake.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].method, "POST");
    assert_eq!(
        got[0].content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(got[1].method, "GET");
    assert_eq!(got[1].content_type, None);
    for text in &got {
        assert_eq!(
            text.body,
            json!({"to": "+254700000004", "from": SMS_FROM, "text": "Curfew from 18:00 & roads closed = stay put", "dlr": "0"})
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_failures_are_transient_and_refusals_permanent() {
    let fake = FakeSmsGateway::start().await;
    let busy = "+254700000500";
    let throttled = "+254700000429";
    let invalid = "+254700000400";
    fake.answer(busy, 500);
    fake.answer(throttled, 429);
    fake.answer(invalid, 400);
    for sms in [
        gateway(|s| fake.twilio(s)),
        gateway(|s| fake.generic_json(s)),
    ] {
        let provider = sms.provider();
        let err = sms.send(busy, "hello").await.expect_err("500");
        assert!(
            matches!(
                err,
                SmsError::Transient {
                    status: Some(500),
                    ..
                }
            ),
            "{provider:?}: {err}"
        );
        let err = sms.send(throttled, "hello").await.expect_err("429");
        assert!(!err.is_permanent(), "{provider:?}: {err}");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
        let err = sms.send(invalid, "hello").await.expect_err("400");
        assert!(
            matches!(
                err,
                SmsError::Permanent {
                    status: Some(400),
                    ..
                }
            ),
            "{provider:?}: {err}"
        );
        if provider == SmsProvider::Twilio {
            assert!(err.to_string().contains("Twilio error 21211"), "{err}");
        }
    }
    assert_eq!(
        fake.received().len(),
        6,
        "every attempt reached the gateway"
    );

    // Wrong credentials: refused by the gateway, and not worth retrying.
    let wrong = gateway(|s| {
        fake.twilio(s);
        s.sms_twilio_auth_token = "stolen-long-ago".into();
    });
    let err = wrong.send("+254700000001", "hello").await.expect_err("401");
    assert!(
        matches!(
            err,
            SmsError::Permanent {
                status: Some(401),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("Authenticate"), "{err}");
    assert_eq!(fake.rejected().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_hangs_is_a_transient_failure() {
    let fake = FakeSmsGateway::start().await;
    let slow = "+254700000408";
    fake.stall(slow);
    let sms = gateway(|s| {
        fake.generic_json(s);
        s.sms_timeout_secs = 1;
    });
    let started = std::time::Instant::now();
    let err = sms.send(slow, "hello").await.expect_err("timeout");
    assert!(
        matches!(err, SmsError::Transient { status: None, .. }),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        fake.received().len(),
        1,
        "it reached the gateway, which may still send it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_provider_means_no_text_and_bad_settings_stop_the_server() {
    let srv = TestServer::start(Backend::Sqlite).await.expect("server");
    assert!(!srv.state.sms.is_enabled());
    assert!(matches!(
        srv.state.sms.send("+254700000001", "hello").await,
        Err(SmsError::Disabled)
    ));
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = Settings {
        sms_provider: SmsProvider::Twilio,
        database_url: format!("sqlite://{}/vigil.db", dir.path().display()),
        ..Settings::default()
    };
    let err = vigil_server::start(settings)
        .await
        .expect_err("Twilio without an account");
    assert!(
        err.to_string().contains("sms_twilio_account_sid"),
        "{err:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_beyond_the_bound_wait_their_turn_at_the_gateway() {
    const BOUND: usize = 3;
    let fake = FakeSmsGateway::start().await;
    // A gateway under load: each answer takes a while, so texts sent together overlap.
    fake.delay(Duration::from_millis(200));
    let sms = gateway(|s| {
        fake.twilio(s);
        s.sms_concurrency = BOUND;
    });
    let numbers: Vec<String> = (0..12).map(|i| format!("+2547002{i:05}")).collect();
    let sent = futures_util::future::join_all(
        numbers
            .iter()
            .map(|n| sms.send(n, "Evacuate: go to assembly point B.")),
    )
    .await;
    assert!(sent.iter().all(Result::is_ok), "{sent:?}");
    assert_eq!(fake.received().len(), numbers.len());
    let most = fake.most_in_flight();
    assert!(
        (2..=BOUND).contains(&most),
        "the gateway saw {most} texts at once; the bound is {BOUND}"
    );
}
