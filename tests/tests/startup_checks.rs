//! Development data stays in development: the real `reactivation serve` refuses to
//! start (non-zero exit, one stderr line naming the variable) with a published or weak
//! secret, without the internal token, or on a database holding the demo accounts that
//! `reactivation dev` seeds; and `dev` seeds them only when asked.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use system_tests::{Stack, StackOptions, binary, random_secret};

/// The master key README.md and crates/reactivation/src/dev.rs publish.
const PUBLISHED_KEY: &str = "cmVhY3RpdmF0aW9uLWRldi1vbmx5LXNlY3JldC1rZXktbm90LWZvci1wcm9kdWN0aW9u";
/// The carrier webhook secret dev.rs publishes (and prints).
const PUBLISHED_WEBHOOK_SECRET: &str = "whsec_cmVhY3RpdmF0aW9uLWRldi1vbmx5LXdlYmhvb2sta2V5";

/// Base64 of 16 random bytes: too short for a key or a token.
fn short_secret() -> String {
    use base64::Engine;
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// An empty, migrated database (a stack of no services).
async fn database() -> Stack {
    Stack::start_with(StackOptions {
        services: vec![],
        ..StackOptions::default()
    })
    .await
}

/// Good settings for `serve`: random secrets, free ports.
fn good_env(stack: &Stack) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", stack.database_url.clone()),
        ("REACTIVATION_SECRET_KEY", random_secret()),
        ("REACTIVATION_INTERNAL_TOKENS", random_secret()),
        (
            "REACTIVATION_GATEWAY_ADDR",
            format!("127.0.0.1:{}", free_port()),
        ),
        (
            "REACTIVATION_RISK_ADDR",
            format!("127.0.0.1:{}", free_port()),
        ),
        ("REACTIVATION_LOG", "warn".into()),
    ]
}

fn with(
    mut env: Vec<(&'static str, String)>,
    name: &'static str,
    value: Option<&str>,
) -> Vec<(&'static str, String)> {
    env.retain(|(k, _)| *k != name);
    if let Some(v) = value {
        env.push((name, v.to_owned()));
    }
    env
}

fn spawn(args: &[&str], env: &[(&'static str, String)], log: Option<&PathBuf>) -> Child {
    let mut command = Command::new(binary());
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null());
    match log {
        Some(path) => {
            let file = std::fs::File::create(path).expect("log file");
            command
                .stdout(file.try_clone().expect("log file"))
                .stderr(file);
        }
        None => {
            command.stdout(Stdio::null()).stderr(Stdio::piped());
        }
    }
    command.spawn().expect("spawn reactivation")
}

/// Runs `reactivation serve <service>` and expects it to stop at once: its exit code and
/// stderr. Fails if it is still running after 30 s.
fn refused(service: &str, env: &[(&'static str, String)]) -> (i32, String) {
    let mut child = spawn(&["serve", service], env, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "serve {service} started instead of refusing:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts a non-zero exit and one stderr line naming `variable` and saying `why`.
fn assert_refused(service: &str, env: &[(&'static str, String)], variable: &str, why: &str) {
    let (code, stderr) = refused(service, env);
    assert_ne!(code, 0, "serve {service} exited 0: {stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("reactivation: ") && l.contains(variable))
        .unwrap_or_else(|| panic!("no line naming {variable}:\n{stderr}"));
    assert!(line.contains(why), "{line}");
    for (_, value) in env {
        if value.len() >= 32 && !value.starts_with("postgres") {
            assert!(!stderr.contains(value.as_str()), "a secret leaks: {stderr}");
        }
    }
}

async fn wait_ready(url: &str, child: &mut Child, log: Option<&PathBuf>) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let text = log.map(std::fs::read_to_string).transpose().ok().flatten();
            panic!("exited with {status} before {url} was ready: {text:?}");
        }
        if let Ok(r) = http.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "{url} never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn serve_refuses_the_published_key() {
    let stack = database().await;
    let env = with(
        good_env(&stack),
        "REACTIVATION_SECRET_KEY",
        Some(PUBLISHED_KEY),
    );
    for service in ["gateway", "identity", "webhooks", "all", "risk"] {
        assert_refused(service, &env, "REACTIVATION_SECRET_KEY", "published");
    }
}

#[tokio::test]
async fn serve_refuses_a_short_or_typed_key() {
    let stack = database().await;
    let short = short_secret();
    let env = with(good_env(&stack), "REACTIVATION_SECRET_KEY", Some(&short));
    assert_refused("gateway", &env, "REACTIVATION_SECRET_KEY", "16 bytes");
    // 43 bytes of text: long enough, not random.
    let typed = "Y29ycmVjdCBob3JzZSBiYXR0ZXJ5IHN0YXBsZSBhbmQgbW9yZSB3b3Jkcw==";
    let env = with(good_env(&stack), "REACTIVATION_SECRET_KEY", Some(typed));
    assert_refused("identity", &env, "REACTIVATION_SECRET_KEY", "text");
    // Missing where it is used.
    let env = with(good_env(&stack), "REACTIVATION_SECRET_KEY", None);
    assert_refused("webhooks", &env, "REACTIVATION_SECRET_KEY", "not set");
}

#[tokio::test]
async fn serve_refuses_a_published_webhook_secret_and_a_missing_internal_token() {
    let stack = database().await;
    let env = with(
        good_env(&stack),
        "REACTIVATION_CARRIER_WEBHOOK_SECRETS",
        Some(PUBLISHED_WEBHOOK_SECRET),
    );
    assert_refused(
        "gateway",
        &env,
        "REACTIVATION_CARRIER_WEBHOOK_SECRETS",
        "published",
    );
    let env = with(good_env(&stack), "REACTIVATION_INTERNAL_TOKENS", None);
    for service in ["gateway", "identity", "all"] {
        assert_refused(service, &env, "REACTIVATION_INTERNAL_TOKENS", "not set");
    }
    let short = short_secret();
    let env = with(
        good_env(&stack),
        "REACTIVATION_INTERNAL_TOKENS",
        Some(&short),
    );
    assert_refused("identity", &env, "REACTIVATION_INTERNAL_TOKENS", "bytes");
}

#[tokio::test]
async fn dev_seeds_only_when_asked_and_serve_refuses_a_database_it_seeded() {
    let stack = database().await;
    let logs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/system-tests");
    std::fs::create_dir_all(&logs).expect("log folder");
    let dev_env = || {
        let gateway = free_port();
        let identity = free_port();
        let sim = free_port();
        let env: Vec<(&'static str, String)> = vec![
            ("DATABASE_URL", stack.database_url.clone()),
            ("REACTIVATION_GATEWAY_ADDR", format!("127.0.0.1:{gateway}")),
            (
                "REACTIVATION_IDENTITY_ADDR",
                format!("127.0.0.1:{identity}"),
            ),
            (
                "REACTIVATION_IDENTITY_URL",
                format!("http://127.0.0.1:{identity}"),
            ),
            (
                "REACTIVATION_RISK_ADDR",
                format!("127.0.0.1:{}", free_port()),
            ),
            (
                "REACTIVATION_PROVISIONING_ADDR",
                format!("127.0.0.1:{}", free_port()),
            ),
            (
                "REACTIVATION_WEBHOOKS_ADDR",
                format!("127.0.0.1:{}", free_port()),
            ),
            (
                "REACTIVATION_TIMERS_ADDR",
                format!("127.0.0.1:{}", free_port()),
            ),
            ("REACTIVATION_CARRIER_SIM_ADDR", format!("127.0.0.1:{sim}")),
            (
                "REACTIVATION_CARRIER_URL",
                format!("http://127.0.0.1:{sim}"),
            ),
            ("REACTIVATION_DB_MAX_CONNECTIONS", "3".into()),
        ];
        (env, format!("http://127.0.0.1:{gateway}/readyz"))
    };
    let demo_agents = || async {
        sqlx::query_as::<_, (String, bool)>("SELECT username, demo FROM agents ORDER BY username")
            .fetch_all(&stack.pool)
            .await
            .expect("agents")
    };

    // DATABASE_URL without --demo-data: nothing seeded, and it says so.
    let log = logs.join(format!("{}-dev-plain.log", uuid::Uuid::new_v4().simple()));
    let (env, ready) = dev_env();
    let mut dev = spawn(&["dev"], &env, Some(&log));
    wait_ready(&ready, &mut dev, Some(&log)).await;
    let _ = dev.kill();
    let _ = dev.wait();
    let printed = std::fs::read_to_string(&log).expect("dev's output");
    assert!(printed.contains("Not seeding demo data"), "{printed}");
    assert!(!printed.contains("Demo agent logins"), "{printed}");
    assert!(demo_agents().await.is_empty());

    // With --demo-data: the seven demo agents (one per role, a second analyst for
    // four-eyes appeals), each marked demo.
    let log = logs.join(format!("{}-dev-demo.log", uuid::Uuid::new_v4().simple()));
    let (env, ready) = dev_env();
    let mut dev = spawn(&["dev", "--demo-data"], &env, Some(&log));
    wait_ready(&ready, &mut dev, Some(&log)).await;
    let _ = dev.kill();
    let _ = dev.wait();
    let agents = demo_agents().await;
    assert_eq!(agents.len(), 7, "{agents:?}");
    assert!(agents.iter().all(|(_, demo)| *demo), "{agents:?}");

    // serve refuses that database, naming the variable and the accounts.
    assert_refused("risk", &good_env(&stack), "DATABASE_URL", "admin.demo");
    assert_refused("gateway", &good_env(&stack), "DATABASE_URL", "demo agent");

    // Without the demo accounts the same settings start.
    sqlx::query("DELETE FROM agents WHERE demo")
        .execute(&stack.pool)
        .await
        .expect("delete the unused demo accounts");
    let env = good_env(&stack);
    let risk_addr = env
        .iter()
        .find(|(k, _)| *k == "REACTIVATION_RISK_ADDR")
        .map(|(_, v)| v.clone())
        .unwrap();
    let mut serve = spawn(&["serve", "risk"], &env, None);
    wait_ready(&format!("http://{risk_addr}/readyz"), &mut serve, None).await;
    let _ = serve.kill();
    let _ = serve.wait();
}
