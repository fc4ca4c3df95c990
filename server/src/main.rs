//! `vigil`: the command line over the server library.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use vigil_server::config::{LogFormat, Settings};
use vigil_server::demo::{DemoInfo, seed};
use vigil_server::node_lock::NodeLock;
use vigil_server::policy::Role;
use vigil_server::users::NewPerson;

// glibc's malloc keeps the 19 MiB blocks of every Argon2 hash in per-thread arenas (measured:
// 740 MiB after creating 1,000 users) and fragments under many small per-connection buffers;
// mimalloc returns freed memory to the system.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "Location and emergency communications for staff in dangerous places"
)]
struct Cli {
    /// Settings file (default: vigil.toml in the working directory, if present).
    #[arg(long, global = true, env = "VIGIL_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the production server.
    Serve,
    /// Run the server on an embedded database seeded with demo data.
    Demo,
    /// Apply database migrations and exit.
    Migrate,
    /// Administrative tasks.
    Admin {
        #[command(subcommand)]
        task: AdminTask,
    },
    /// The audit trail's hash chains.
    Audit {
        #[command(subcommand)]
        task: AuditTask,
    },
    /// Token-signing keys: rotate them, or list them with their state.
    Keys {
        #[command(subcommand)]
        task: KeysTask,
    },
    /// Print the deployment's web-push (VAPID) public key, creating the key pair if needed.
    VapidKeys {
        /// Print a fresh key pair instead, without storing it.
        #[arg(long)]
        new: bool,
    },
}

#[derive(Subcommand)]
enum AuditTask {
    /// Recompute every organisation's chain (or one's) and report where it breaks; exits 1
    /// when any does.
    Verify {
        /// Only this organisation's chain.
        #[arg(long)]
        org: Option<i64>,
    },
}

#[derive(Subcommand)]
enum KeysTask {
    /// Add a new signing key: published at once, signing after `key_publish_secs`; the old
    /// one stays in the JWKS until every token it signed has expired, then is deleted.
    Rotate {
        /// Seconds until the new key signs (default: the `key_publish_secs` setting).
        #[arg(long)]
        signs_after: Option<u64>,
    },
    /// List the signing keys and when each signs and is retired.
    List,
}

#[derive(Subcommand)]
enum AdminTask {
    /// Create a user (the first system admin, typically); the organisation is created if new.
    CreateUser {
        /// Login email.
        #[arg(long)]
        email: String,
        /// Full name.
        #[arg(long)]
        name: String,
        /// Organisation short name, e.g. UNDSS.
        #[arg(long)]
        org: String,
        /// Organisation full name, used if the organisation is created.
        #[arg(long)]
        org_name: Option<String>,
        /// Role in the organisation; repeat for several (staff, operator, adviser, org_admin, oversight).
        #[arg(long = "role", value_parser = parse_role)]
        roles: Vec<Role>,
        /// Make the user a system admin.
        #[arg(long)]
        system_admin: bool,
        /// Read the password from this environment variable instead of standard input.
        #[arg(long)]
        password_env: Option<String>,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| {
        format!("{s:?} is not a role: staff, operator, adviser, org_admin, oversight")
    })
}

fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&settings.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when this is called, not
/// when it is first polled, so a signal that arrives while the server is still starting is kept.
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot install signal handlers; stop the process with SIGKILL");
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut settings = Settings::load(cli.config.as_deref())?;
    if matches!(cli.command, Command::Demo) && std::env::var_os("VIGIL_DATABASE_URL").is_none() {
        settings.database_url = "sqlite://vigil-demo.db".into();
    }
    init_logging(&settings);
    match cli.command {
        Command::Serve => serve(settings, false).await,
        Command::Demo => serve(settings, true).await,
        Command::Migrate => {
            vigil_server::start(settings).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::VapidKeys { new: true } => {
            let keys = vigil_server::keys::generate_vapid()?;
            println!(
                "public_key  = {}\nprivate_key = {}",
                keys.public_key, keys.private_key
            );
            Ok(())
        }
        Command::VapidKeys { new: false } => {
            let state = vigil_server::start(settings).await?;
            println!("{}", state.keys.get().vapid.public_key);
            Ok(())
        }
        Command::Admin { task } => admin(settings, task).await,
        Command::Keys { task } => keys(settings, task).await,
        Command::Audit {
            task: AuditTask::Verify { org },
        } => audit_verify(settings, org).await,
    }
}

async fn serve(settings: Settings, demo: bool) -> anyhow::Result<()> {
    tracing::info!(?settings, "starting");
    let signal = shutdown_signal();
    let bind = settings.bind;
    // Before anything is migrated or replayed: a second server on this database stops here.
    let clustered = !settings.nats_url.is_empty();
    if clustered && !settings.database_url.starts_with("postgres") {
        anyhow::bail!(vigil_server::cluster::ClusterError::NotPostgres(
            settings
                .database_url
                .split(':')
                .next()
                .unwrap_or("")
                .to_string()
        ));
    }
    let lock =
        NodeLock::acquire(&settings.database_url, &node_description(bind), clustered).await?;
    let lost = lock.lost();
    let stop = async move {
        tokio::select! {
            () = signal => {}
            () = lost => {}
        }
    };
    let state = vigil_server::start(settings).await?;
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind} (set VIGIL_BIND to another address)"))?;
    let url = format!("http://{}", listener.local_addr()?);
    if demo {
        let users = seed(&state).await?;
        let info = DemoInfo {
            url: format!("{url}/"),
            users,
        };
        std::fs::write("vigil-demo.json", serde_json::to_vec_pretty(&info)?)
            .context("writing vigil-demo.json")?;
        // Best effort: a closed stdout must not stop the server.
        let _ = print_demo_banner(&url, &info);
    }
    tracing::info!(%url, "listening");
    let served = vigil_server::serve(state, listener, stop).await;
    let lost = lock.is_lost();
    lock.release().await;
    served?;
    if lost {
        anyhow::bail!(
            "stopped: another Vigil server took over this database while this one had lost its connection"
        );
    }
    Ok(())
}

/// How this server appears to the next one refused on its database.
fn node_description(bind: std::net::SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    let pid = std::process::id();
    if host.is_empty() {
        format!("vigil {bind} pid {pid}")
    } else {
        format!("vigil {host} {bind} pid {pid}")
    }
}

fn print_demo_banner(url: &str, info: &DemoInfo) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "\nVigil demo is running at {url}/")?;
    writeln!(out, "API description: {url}/api/openapi.json")?;
    writeln!(
        out,
        "Logins (password for all: {}):",
        vigil_server::demo::DEMO_PASSWORD
    )?;
    for u in &info.users {
        writeln!(out, "  {:<26} {:<10} {}", u.email, u.role, u.org)?;
    }
    writeln!(
        out,
        "(also written to vigil-demo.json; Ctrl-C stops the server)\n"
    )?;
    out.flush()
}

async fn open_db(settings: &Settings) -> anyhow::Result<vigil_server::db::Db> {
    let db = vigil_server::db::Db::connect_with(
        &settings.database_url,
        settings.db_max_connections,
        settings.sqlite_synchronous,
    )
    .await?;
    db.migrate().await?;
    Ok(db)
}

async fn audit_verify(settings: Settings, org: Option<i64>) -> anyhow::Result<()> {
    let db = open_db(&settings).await?;
    vigil_server::audit::chain_earlier_entries(&db).await?;
    let reports = vigil_server::audit::verify(&db, org).await?;
    let mut broken = 0;
    for r in &reports {
        let name = r.org_id.map_or("no organisation".to_string(), |o| {
            format!("organisation {o}")
        });
        if r.problems.is_empty() {
            println!(
                "{name}: {} entries, chain holds, head {}",
                r.entries, r.head_hash
            );
        } else {
            broken += 1;
            println!("{name}: {} entries, BROKEN:", r.entries);
            for p in &r.problems {
                println!("  - {p}");
            }
        }
    }
    if broken > 0 {
        anyhow::bail!("{broken} of {} audit chains are broken", reports.len());
    }
    eprintln!("{} audit chains checked, all hold", reports.len());
    Ok(())
}

async fn keys(settings: Settings, task: KeysTask) -> anyhow::Result<()> {
    let db = open_db(&settings).await?;
    vigil_server::keys::Keys::load_or_create(&db).await?;
    let now = vigil_server::db::now_ms();
    let when = |ms: i64| {
        let secs = (ms - now) / 1000;
        if secs > 0 {
            format!("in {secs} s")
        } else {
            format!("{} s ago", -secs)
        }
    };
    if let KeysTask::Rotate { signs_after } = task {
        let added = vigil_server::keys::rotate(
            &db,
            &settings,
            signs_after.unwrap_or(settings.key_publish_secs),
            now,
        )
        .await?;
        eprintln!(
            "added key {}: published now, signs {}; every node picks it up within {} s",
            added.kid,
            when(added.signs_from),
            settings.key_reload_secs
        );
    }
    for key in vigil_server::keys::signing_keys(&db).await? {
        let state = match key.verify_until {
            _ if key.signs_from > now => format!("published; signs {}", when(key.signs_from)),
            None => "signs".to_string(),
            Some(until) => format!(
                "retiring: tokens it signed are accepted for {} s more",
                ((until - now) / 1000).max(0)
            ),
        };
        println!("{}  {state}", key.kid);
    }
    Ok(())
}

async fn admin(settings: Settings, task: AdminTask) -> anyhow::Result<()> {
    let AdminTask::CreateUser {
        email,
        name,
        org,
        org_name,
        roles,
        system_admin,
        password_env,
    } = task;
    let state = vigil_server::start(settings).await?;
    let password = match password_env {
        Some(var) => {
            std::env::var(&var).with_context(|| format!("environment variable {var} is not set"))?
        }
        None => {
            eprint!("password for {email}: ");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    let org_id = vigil_server::orgs::find_or_create(&state.db, &org, org_name.as_deref()).await?;
    let person = NewPerson {
        email,
        name,
        password: Some(password),
        roles,
        system_admin,
        ..NewPerson::default()
    };
    let id = vigil_server::users::create_person(&state.db, org_id, person, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("created user {id} in organisation {org} ({org_id})");
    Ok(())
}
