//! The line commands a person types, parsed without touching the SDK (so every one is tested
//! on its own).

use vigil_sdk::AlertReceiptState;

/// One line's command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Sign in; without a password the caller takes it from `VIGIL_PHONE_PASSWORD`.
    Login {
        /// The person's email.
        email: String,
        /// The rest of the line (passwords may hold spaces).
        password: Option<String>,
    },
    /// Follow these areas (replacing the areas followed before; none: follow nothing).
    Follow(Vec<i64>),
    /// Switch between tracking and location-less mode.
    Mode {
        /// `true`: location-less.
        location_less: bool,
    },
    /// The phone is here: sent when tracking, kept on the phone when location-less.
    Fix {
        /// Latitude, degrees.
        lat: f64,
        /// Longitude, degrees.
        lon: f64,
        /// Accuracy radius, metres.
        accuracy_m: Option<f64>,
    },
    /// How far the person got with an alert.
    Receipt {
        /// The alert.
        alert_id: i64,
        /// Read or acknowledged.
        state: AlertReceiptState,
    },
    /// Answer a roll-call.
    Answer {
        /// The roll-call.
        rollcall_id: i64,
        /// `safe` or `need_help`, as the server spells it.
        status: &'static str,
        /// Answering for a dependant.
        dependant_id: Option<i64>,
        /// Anything else the person typed.
        note: Option<String>,
    },
    /// Press SOS.
    Sos {
        /// Where the person is (shared with the case even when location-less: they typed it).
        position: Option<(f64, f64)>,
        /// Anything else the person typed.
        note: Option<String>,
    },
    /// Send a chat message.
    Chat {
        /// The conversation.
        conversation_id: i64,
        /// The message, as typed.
        text: String,
    },
    /// List the alerts stored on the phone.
    Alerts,
    /// How much waits in the outbox.
    Pending,
    /// The list of commands.
    Help,
    /// Stop the client and leave.
    Quit,
}

/// What `help` prints, one command a line.
pub const HELP: &[&str] = &[
    "login EMAIL [PASSWORD]          sign in (no PASSWORD: $VIGIL_PHONE_PASSWORD)",
    "follow [AREA_ID...]             the areas followed in location-less mode (none: stop)",
    "mode tracking|location-less     share positions, or decide alerts on the phone only",
    "fix LAT LON [ACCURACY_M]        the phone is here (sent only when tracking)",
    "read ALERT_ID | ack ALERT_ID    the alert was read / acknowledged",
    "answer ROLLCALL_ID safe|need-help [for PERSON_ID] [NOTE...]",
    "sos [LAT LON] [NOTE...]         press SOS (a position typed here is shared with the case)",
    "chat CONVERSATION_ID TEXT...    send a chat message",
    "alerts                          the alerts stored on the phone",
    "pending                         what waits in the outbox",
    "help | quit",
];

/// Parses one line: `Ok(None)` for a blank line or a `#` comment; `Err` says what is wrong in
/// one line.
pub fn parse(line: &str) -> Result<Option<Command>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (word, rest) = split_word(line);
    let args: Vec<&str> = rest.split_whitespace().collect();
    let command = match word.to_ascii_lowercase().as_str() {
        "login" => {
            let (email, password) = split_word(rest);
            if email.is_empty() {
                return Err("usage: login EMAIL [PASSWORD]".into());
            }
            Command::Login {
                email: email.to_string(),
                password: (!password.is_empty()).then(|| password.to_string()),
            }
        }
        "follow" => Command::Follow(
            args.iter()
                .map(|a| id("AREA_ID", a))
                .collect::<Result<_, _>>()?,
        ),
        "mode" => match args.as_slice() {
            ["tracking"] => Command::Mode {
                location_less: false,
            },
            ["location-less" | "location_less"] => Command::Mode {
                location_less: true,
            },
            _ => return Err("usage: mode tracking|location-less".into()),
        },
        "fix" => match args.as_slice() {
            [lat, lon] | [lat, lon, _] => {
                let (lat, lon) = position(lat, lon)?;
                let accuracy_m = match args.get(2) {
                    Some(a) => Some(accuracy(a)?),
                    None => None,
                };
                Command::Fix {
                    lat,
                    lon,
                    accuracy_m,
                }
            }
            _ => return Err("usage: fix LAT LON [ACCURACY_M]".into()),
        },
        w @ ("ack" | "read") => match args.as_slice() {
            [alert] => Command::Receipt {
                alert_id: id("ALERT_ID", alert)?,
                state: if w == "ack" {
                    AlertReceiptState::Acknowledged
                } else {
                    AlertReceiptState::Read
                },
            },
            _ => return Err(format!("usage: {w} ALERT_ID")),
        },
        "answer" => answer(&args)?,
        "sos" => {
            let position = match args.as_slice() {
                [lat, lon, ..] if lat.parse::<f64>().is_ok() && lon.parse::<f64>().is_ok() => {
                    Some(position(lat, lon)?)
                }
                _ => None,
            };
            let skip = if position.is_some() { 2 } else { 0 };
            Command::Sos {
                position,
                note: note(&args[skip..]),
            }
        }
        "chat" => {
            let (conversation, text) = split_word(rest);
            if conversation.is_empty() || text.is_empty() {
                return Err("usage: chat CONVERSATION_ID TEXT...".into());
            }
            Command::Chat {
                conversation_id: id("CONVERSATION_ID", conversation)?,
                text: text.to_string(),
            }
        }
        "alerts" => no_args(&args, "alerts", Command::Alerts)?,
        "pending" => no_args(&args, "pending", Command::Pending)?,
        "help" | "?" => Command::Help,
        "quit" | "exit" => no_args(&args, "quit", Command::Quit)?,
        other => return Err(format!("unknown command '{other}' (help lists them)")),
    };
    Ok(Some(command))
}

fn answer(args: &[&str]) -> Result<Command, String> {
    const USAGE: &str = "usage: answer ROLLCALL_ID safe|need-help [for PERSON_ID] [NOTE...]";
    let [rollcall, status, rest @ ..] = args else {
        return Err(USAGE.into());
    };
    let status = match *status {
        "safe" => "safe",
        "need-help" | "need_help" => "need_help",
        _ => return Err(USAGE.into()),
    };
    let (dependant_id, rest) = match rest {
        ["for", person, rest @ ..] => (Some(id("PERSON_ID", person)?), rest),
        ["for"] => return Err(USAGE.into()),
        _ => (None, rest),
    };
    Ok(Command::Answer {
        rollcall_id: id("ROLLCALL_ID", rollcall)?,
        status,
        dependant_id,
        note: note(rest),
    })
}

/// The first word and the rest of `s`, the rest as typed (inner spaces kept).
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim();
    match s.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (s, ""),
    }
}

fn no_args(args: &[&str], name: &str, command: Command) -> Result<Command, String> {
    if args.is_empty() {
        Ok(command)
    } else {
        Err(format!("usage: {name} (no arguments)"))
    }
}

fn note(words: &[&str]) -> Option<String> {
    (!words.is_empty()).then(|| words.join(" "))
}

fn id(what: &str, s: &str) -> Result<i64, String> {
    match s.parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{what} must be a positive number, not '{s}'")),
    }
}

fn position(lat: &str, lon: &str) -> Result<(f64, f64), String> {
    let number = |what: &str, s: &str, limit: f64| match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v.abs() <= limit => Ok(v),
        _ => Err(format!(
            "{what} must be a number from -{limit} to {limit}, not '{s}'"
        )),
    };
    Ok((number("LAT", lat, 90.0)?, number("LON", lon, 180.0)?))
}

fn accuracy(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!(
            "ACCURACY_M must be a number of metres (0 or more), not '{s}'"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Command {
        parse(line)
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .unwrap_or_else(|| panic!("{line}: no command"))
    }

    fn bad(line: &str) -> String {
        match parse(line) {
            Err(e) => e,
            Ok(c) => panic!("{line} parsed as {c:?}"),
        }
    }

    #[test]
    fn blank_lines_and_comments_are_nothing() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("   \t"), Ok(None));
        assert_eq!(parse("# a note for the log"), Ok(None));
    }

    #[test]
    fn login_keeps_a_password_with_spaces() {
        assert_eq!(
            ok("login amina@example.org correct horse  battery"),
            Command::Login {
                email: "amina@example.org".into(),
                password: Some("correct horse  battery".into()),
            }
        );
        assert_eq!(
            ok("LOGIN amina@example.org"),
            Command::Login {
                email: "amina@example.org".into(),
                password: None,
            }
        );
        assert!(bad("login").starts_with("usage: login"));
    }

    #[test]
    fn follow_takes_area_ids_or_none() {
        assert_eq!(ok("follow 3 14  15"), Command::Follow(vec![3, 14, 15]));
        assert_eq!(ok("follow"), Command::Follow(vec![]));
        assert_eq!(
            bad("follow 3 market"),
            "AREA_ID must be a positive number, not 'market'"
        );
        assert!(bad("follow -2").contains("'-2'"));
    }

    #[test]
    fn mode_is_tracking_or_location_less() {
        assert_eq!(
            ok("mode tracking"),
            Command::Mode {
                location_less: false
            }
        );
        assert_eq!(
            ok("mode location-less"),
            Command::Mode {
                location_less: true
            }
        );
        assert_eq!(
            ok("mode location_less"),
            Command::Mode {
                location_less: true
            }
        );
        for line in ["mode", "mode hidden", "mode tracking location-less"] {
            assert_eq!(bad(line), "usage: mode tracking|location-less");
        }
    }

    #[test]
    fn fix_takes_a_position_and_maybe_an_accuracy() {
        assert_eq!(
            ok("fix -1.29 36.82"),
            Command::Fix {
                lat: -1.29,
                lon: 36.82,
                accuracy_m: None
            }
        );
        assert_eq!(
            ok("fix 4.85 31.6 12.5"),
            Command::Fix {
                lat: 4.85,
                lon: 31.6,
                accuracy_m: Some(12.5)
            }
        );
        assert!(bad("fix 1").starts_with("usage: fix"));
        assert!(bad("fix 1 2 3 4").starts_with("usage: fix"));
        assert!(bad("fix 91 0").starts_with("LAT must be"));
        assert!(bad("fix 0 180.5").starts_with("LON must be"));
        assert!(bad("fix NaN 0").starts_with("LAT must be"));
        assert!(bad("fix 0 inf").starts_with("LON must be"));
        assert!(bad("fix 0 0 -3").starts_with("ACCURACY_M must be"));
        assert!(bad("fix 0 0 wide").starts_with("ACCURACY_M must be"));
    }

    #[test]
    fn ack_and_read_are_receipts() {
        assert_eq!(
            ok("ack 12"),
            Command::Receipt {
                alert_id: 12,
                state: AlertReceiptState::Acknowledged
            }
        );
        assert_eq!(
            ok("read 12"),
            Command::Receipt {
                alert_id: 12,
                state: AlertReceiptState::Read
            }
        );
        assert_eq!(bad("ack"), "usage: ack ALERT_ID");
        assert_eq!(bad("read 1 2"), "usage: read ALERT_ID");
        assert_eq!(
            bad("ack twelve"),
            "ALERT_ID must be a positive number, not 'twelve'"
        );
    }

    #[test]
    fn answer_for_oneself_or_a_dependant_with_a_note() {
        assert_eq!(
            ok("answer 5 safe"),
            Command::Answer {
                rollcall_id: 5,
                status: "safe",
                dependant_id: None,
                note: None
            }
        );
        assert_eq!(
            ok("answer 5 need-help for 44 hurt leg, in the clinic"),
            Command::Answer {
                rollcall_id: 5,
                status: "need_help",
                dependant_id: Some(44),
                note: Some("hurt leg, in the clinic".into())
            }
        );
        assert_eq!(
            ok("answer 5 need_help at the clinic"),
            Command::Answer {
                rollcall_id: 5,
                status: "need_help",
                dependant_id: None,
                note: Some("at the clinic".into())
            }
        );
        for line in ["answer", "answer 5", "answer 5 fine", "answer 5 safe for"] {
            assert!(bad(line).starts_with("usage: answer"), "{line}");
        }
        assert!(bad("answer x safe").starts_with("ROLLCALL_ID"));
        assert!(bad("answer 5 safe for me").starts_with("PERSON_ID"));
    }

    #[test]
    fn sos_with_or_without_a_position_and_a_note() {
        assert_eq!(
            ok("sos"),
            Command::Sos {
                position: None,
                note: None
            }
        );
        assert_eq!(
            ok("sos 2.04 45.34 car stopped at a roadblock"),
            Command::Sos {
                position: Some((2.04, 45.34)),
                note: Some("car stopped at a roadblock".into())
            }
        );
        assert_eq!(
            ok("sos 3 people hurt"),
            Command::Sos {
                position: None,
                note: Some("3 people hurt".into())
            }
        );
        assert!(bad("sos 95 10").starts_with("LAT must be"));
    }

    #[test]
    fn chat_keeps_the_text_as_typed() {
        assert_eq!(
            ok("chat 9 They took my  SIM card"),
            Command::Chat {
                conversation_id: 9,
                text: "They took my  SIM card".into()
            }
        );
        assert_eq!(
            ok("chat 9 ابقوا في أماكنكم"),
            Command::Chat {
                conversation_id: 9,
                text: "ابقوا في أماكنكم".into()
            }
        );
        assert!(bad("chat 9").starts_with("usage: chat"));
        assert!(bad("chat").starts_with("usage: chat"));
        assert!(bad("chat nine hello").starts_with("CONVERSATION_ID"));
    }

    #[test]
    fn the_words_without_arguments() {
        assert_eq!(ok("alerts"), Command::Alerts);
        assert_eq!(ok("pending"), Command::Pending);
        assert_eq!(ok("help"), Command::Help);
        assert_eq!(ok("?"), Command::Help);
        assert_eq!(ok("quit"), Command::Quit);
        assert_eq!(ok("exit"), Command::Quit);
        assert_eq!(bad("alerts all"), "usage: alerts (no arguments)");
        assert_eq!(bad("pending now"), "usage: pending (no arguments)");
    }

    #[test]
    fn an_unknown_command_says_so() {
        assert_eq!(
            bad("launch rockets"),
            "unknown command 'launch' (help lists them)"
        );
    }
}
