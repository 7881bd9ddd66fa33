//! The technician's status page in headless Chromium (driven over the
//! DevTools protocol by `tests/browser/cdp.py`), against an in-process
//! agent polling the in-process Modbus device through a TCP proxy the
//! test can cut:
//! - the device shows OK, then DOWN within two of the page's polls of the
//!   agent seeing it down, then OK again, without a reload;
//! - a value change appears without a reload;
//! - a limit crossing raises an alarm that appears; the page's
//!   acknowledge is refused without credentials (401), taken with the
//!   token, persisted in the spool and still acknowledged after the agent
//!   restarts; the page shows a banner while the agent is gone;
//! - without `[status.auth]` the page has no button and the action
//!   answers 403;
//! - no secret of the config (uplink token, MQTT password, the page's own
//!   token) is on any page or API answer;
//! - every control has a label and every state is written in words.
//!
//! Screenshots of the overview, devices and alarms at 1280 and 390 px
//! are written to `<target>/page-screenshots/`.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use edge_agent::config::AgentConfig;
use edge_agent::spool::Spool;
use edge_agent::Agent;
use edge_demo::device::SimDevice;
use edge_tests::free_port;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const UPLINK_TOKEN: &str = "t-UPLINK-SECRET-0123456789abcdef";
const MQTT_PASSWORD: &str = "MQTT-SECRET-pw-0123";
const PAGE_TOKEN: &str = "tok-PAGE-SECRET-0123";
/// The page polls /api/status this often (page.js).
const PAGE_POLL: Duration = Duration::from_secs(2);

/// Headless Chromium behind `cdp.py`.
struct Browser {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Browser {
    fn start() -> anyhow::Result<Browser> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/cdp.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", script.display()))?;
        let stdin = child.stdin.take().context("stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        ensure!(
            line.contains("\"ready\""),
            "cdp.py did not start chromium (is Debian's chromium installed? scripts/install-test-deps debian): {line:?}"
        );
        Ok(Browser {
            child,
            stdin,
            stdout,
        })
    }

    fn call(&mut self, command: Value) -> anyhow::Result<Value> {
        tokio::task::block_in_place(|| {
            writeln!(self.stdin, "{command}")?;
            self.stdin.flush()?;
            let mut line = String::new();
            self.stdout.read_line(&mut line)?;
            let answer: Value = serde_json::from_str(&line)
                .with_context(|| format!("cdp.py answered {line:?} to {command}"))?;
            if let Some(e) = answer.get("error") {
                bail!("{command}: {e}");
            }
            Ok(answer)
        })
    }

    fn eval(&mut self, expr: &str) -> anyhow::Result<Value> {
        Ok(self.call(json!({"cmd": "eval", "expr": expr}))?["value"].take())
    }

    fn goto(&mut self, url: &str) -> anyhow::Result<()> {
        self.call(json!({"cmd": "goto", "url": url})).map(drop)
    }

    fn viewport(&mut self, width: u32, height: u32) -> anyhow::Result<()> {
        let mobile = width < 600;
        self.call(json!({"cmd": "viewport", "width": width, "height": height, "mobile": mobile}))
            .map(drop)
    }

    /// Poll `expr` in the page every 100 ms until it is true; how long it took.
    async fn wait_for(
        &mut self,
        what: &str,
        expr: &str,
        within: Duration,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            if self.eval(expr)? == json!(true) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > within {
                let body = self.eval("document.body.innerText")?;
                bail!(
                    "{what}: not within {within:?}; the page shows:\n{}",
                    body.as_str().unwrap_or("")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Screenshots of the three views at this width.
    fn screenshots(&mut self, width: u32, tag: &str) -> anyhow::Result<()> {
        let dir = screenshot_dir();
        for view in ["overview", "devices", "alarms"] {
            let path = dir.join(format!("{view}-{width}{tag}.png"));
            let r = self
                .call(json!({"cmd": "screenshot", "path": path, "selector": format!("#{view}")}))?;
            ensure!(
                r["bytes"].as_u64().unwrap_or(0) > 1000,
                "{}: {r}",
                path.display()
            );
        }
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"cmd": "quit"}));
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("page-screenshots")
}

/// A TCP proxy in front of the device that the test can cut (every
/// connection closed, nothing listening) and restore on the same port.
struct Cable {
    listen: SocketAddr,
    target: SocketAddr,
    up: Option<CancellationToken>,
}

impl Cable {
    async fn plug(&mut self) -> anyhow::Result<()> {
        let listener = TcpListener::bind(self.listen).await?;
        let stop = CancellationToken::new();
        self.up = Some(stop.clone());
        let target = self.target;
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => return },
                };
                let stop = stop.clone();
                tokio::spawn(async move {
                    let Ok(mut out) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
                        _ = stop.cancelled() => {}
                    }
                });
            }
        });
        Ok(())
    }

    fn pull(&mut self) {
        if let Some(stop) = self.up.take() {
            stop.cancel();
        }
    }
}

fn secret_file(dir: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(path)
}

fn config(spool: &Path, device: SocketAddr, status: u16, token_file: Option<&Path>) -> String {
    let uplink = free_port().unwrap_or(9);
    let mqtt = free_port().unwrap_or(9);
    let auth = token_file
        .map(|p| format!("[status.auth]\ntoken_file = \"{}\"\n", p.display()))
        .unwrap_or_default();
    format!(
        r#"
gateway_id = "gw-page"
[spool]
path = "{spool}"
[batch]
max_age_ms = 200
[uplink]
url = "http://127.0.0.1:{uplink}/v1/batches"
token = "{UPLINK_TOKEN}"
retry_initial_ms = 100
retry_max_ms = 200
shutdown_drain_ms = 0
[status]
listen = "127.0.0.1:{status}"
{auth}
[[modbus]]
name = "press"
address = "{device}"
poll_interval_ms = 300
timeout_ms = 300
retries = 0
[[modbus.points]]
name = "speed"
register = 0
type = "u16"
unit = "rpm"
[[modbus.points]]
name = "temp"
register = 1
type = "u16"
unit = "degC"
[[mqtt]]
host = "127.0.0.1"
port = {mqtt}
client_id = "gw-page-mqtt"
username = "agent"
password = "{MQTT_PASSWORD}"
[[mqtt.subscriptions]]
topic = "plant/+/level"
series = "{{2}}.level"
[[rules]]
name = "temp"
series = "press.temp"
high = {{ limit = 50.0, severity = "critical" }}
"#,
        spool = spool.display()
    )
}

struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), edge_agent::AgentError>>,
}

fn start_agent(text: &str) -> anyhow::Result<Running> {
    let agent = Agent::new(AgentConfig::parse(text, "page.rs")?);
    let stop = CancellationToken::new();
    let task = tokio::spawn(agent.run(stop.clone()));
    Ok(Running { stop, task })
}

impl Running {
    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await??;
        Ok(())
    }
}

async fn api(client: &reqwest::Client, port: u16) -> anyhow::Result<Value> {
    let r = client
        .get(format!("http://127.0.0.1:{port}/api/status"))
        .send()
        .await?;
    ensure!(r.status() == 200, "/api/status answered {}", r.status());
    Ok(serde_json::from_str(&r.text().await?)?)
}

fn device_state(status: &Value, name: &str) -> Option<String> {
    status["devices"]
        .as_array()?
        .iter()
        .find(|d| d["kind"] == "modbus" && d["name"] == name)
        .and_then(|d| d["state"].as_str().map(str::to_owned))
}

async fn poll_api(
    client: &reqwest::Client,
    port: u16,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(s) = api(client, port).await {
            if check(&s) {
                return Ok(s);
            }
        }
        ensure!(Instant::now() < deadline, "{what}: not within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const ROW_STATE: &str = "(n) => { const r = document.querySelector('#devices-body tr[data-device=\"modbus/' + n + '\"]'); return r ? r.querySelector('.state').textContent : null; }";

/// The rows the script drew (from /api/status) against the rows the
/// server renders now, numbers aside (ages and counters move between
/// the two): the differences, none when the two renderings agree.
const SCRIPT_MATCHES_SERVER: &str = r#"(async () => {
  const html = await (await fetch(location.pathname + location.search)).text();
  const server = new DOMParser().parseFromString(html, 'text/html');
  const norm = (s) => s.replace(/\d+/g, '0');
  const diff = [];
  for (const id of ['overview-list', 'health', 'devices-body', 'points-body', 'alarms-body', 'history-body']) {
    const a = norm(document.getElementById(id).innerHTML), b = norm(server.getElementById(id).innerHTML);
    if (a !== b) diff.push(id + ':\n script ' + a + '\n server ' + b);
  }
  return diff;
})()"#;

/// Every control labelled; every state in words.
const ACCESSIBLE: &str = r#"(() => {
  const bad = [];
  for (const el of document.querySelectorAll('input, select, button, textarea')) {
    const named = el.getAttribute('aria-label') ||
      (el.id && document.querySelector('label[for="' + el.id + '"]')) ||
      (el.tagName === 'BUTTON' && el.textContent.trim());
    if (!named) bad.push('unlabelled ' + el.outerHTML.slice(0, 80));
  }
  for (const c of document.querySelectorAll('#devices-body .state'))
    if (!['OK', 'DOWN', 'DEGRADED', 'PENDING'].includes(c.textContent)) bad.push('state ' + c.textContent);
  for (const c of document.querySelectorAll('#points-body .fresh-word'))
    if (!['fresh', 'STALE'].includes(c.textContent)) bad.push('freshness ' + c.textContent);
  for (const c of document.querySelectorAll('#alarms-body .ackcell'))
    if (!/^(NOT )?ACKNOWLEDGED/.test(c.textContent)) bad.push('ack ' + c.textContent);
  if (!document.documentElement.lang) bad.push('no lang');
  return bad;
})()"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn page_follows_devices_and_values_and_acknowledges_an_alarm_in_chromium(
) -> anyhow::Result<()> {
    let device = SimDevice::new();
    device.set_u16(0, 1200);
    device.set_u16(1, 20);
    let device_listener = TcpListener::bind("127.0.0.1:0").await?;
    let device_addr = device_listener.local_addr()?;
    let stop_device = CancellationToken::new();
    tokio::spawn(device.clone().serve(device_listener, stop_device.clone()));
    let mut cable = Cable {
        listen: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
        target: device_addr,
        up: None,
    };
    cable.plug().await?;

    let dir = tempfile::tempdir()?;
    let spool_path = dir.path().join("spool.db");
    let token_file = secret_file(dir.path(), "page-token", &format!("{PAGE_TOKEN}\n"))?;
    let port = free_port()?;
    let text = config(&spool_path, cable.listen, port, Some(&token_file));
    let agent = start_agent(&text)?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    poll_api(&client, port, "the agent's page answers", |_| true).await?;

    let mut b = Browser::start()?;
    b.viewport(1280, 900)?;
    b.goto(&format!("http://127.0.0.1:{port}/"))?;
    b.wait_for(
        "press shows OK",
        &format!("({ROW_STATE})('press') === 'OK'"),
        Duration::from_secs(20),
    )
    .await?;
    b.eval("window.notReloaded = true")?;

    // A value change appears without a reload.
    b.wait_for(
        "speed shows 1200",
        "document.querySelector('#points-body tr[data-series=\"press.speed\"] .value').textContent === '1200'",
        Duration::from_secs(10),
    )
    .await?;
    device.set_u16(0, 1234);
    b.wait_for(
        "speed shows 1234",
        "document.querySelector('#points-body tr[data-series=\"press.speed\"] .value').textContent === '1234'",
        Duration::from_secs(10),
    )
    .await?;
    ensure!(
        b.eval("window.notReloaded === true")? == json!(true),
        "the page reloaded"
    );
    ensure!(
        b.eval("document.getElementById('updated').dateTime !== ''")? == json!(true),
        "no last-updated time"
    );
    // The filter hides other devices' points.
    b.eval("(() => { const s = document.getElementById('device-filter'); s.value = 'press'; s.dispatchEvent(new Event('change')); })()")?;
    let hidden = b.eval("Array.from(document.querySelectorAll('#points-body tr')).filter(r => r.hidden).map(r => r.dataset.device)")?;
    ensure!(
        hidden
            .as_array()
            .is_some_and(|h| h.iter().all(|d| d != "press")),
        "filter on press hid {hidden}"
    );
    b.eval("(() => { const s = document.getElementById('device-filter'); s.value = ''; s.dispatchEvent(new Event('change')); })()")?;
    b.screenshots(1280, "")?;

    // The cable is pulled: DOWN within two of the page's polls of the agent knowing.
    cable.pull();
    poll_api(&client, port, "the agent sees press down", |s| {
        device_state(s, "press").as_deref() == Some("down")
    })
    .await?;
    let took = b
        .wait_for(
            "press shows DOWN",
            &format!("({ROW_STATE})('press') === 'DOWN'"),
            2 * PAGE_POLL,
        )
        .await?;
    let row = b.eval("document.querySelector('#devices-body tr[data-device=\"modbus/press\"]').className + ' | ' + document.querySelector('#devices-body tr[data-device=\"modbus/press\"] .reason').textContent")?;
    let row = row.as_str().unwrap_or("").to_owned();
    ensure!(
        row.starts_with("st-down | ") && row.len() > "st-down | ".len(),
        "down row: {row:?} (after {took:?})"
    );
    ensure!(
        b.eval("window.notReloaded === true")? == json!(true),
        "the page reloaded"
    );
    // Its points go stale: last good value older than 2 × 300 ms + 2 s.
    let speed_row = "document.querySelector('#points-body tr[data-series=\"press.speed\"]')";
    b.wait_for(
        "press.speed flagged STALE",
        &format!("{speed_row}.className === 'stale' && {speed_row}.querySelector('.fresh-word').textContent === 'STALE'"),
        Duration::from_secs(3) + 2 * PAGE_POLL,
    )
    .await?;
    b.screenshots(1280, "-down")?;
    b.viewport(390, 844)?;
    b.screenshots(390, "-down")?;
    b.viewport(1280, 900)?;
    cable.plug().await?;
    b.wait_for(
        "press back to OK",
        &format!("({ROW_STATE})('press') === 'OK'"),
        Duration::from_secs(20),
    )
    .await?;
    b.wait_for(
        "press.speed fresh again",
        &format!("{speed_row}.className === 'fresh'"),
        Duration::from_secs(10),
    )
    .await?;

    // A limit crossing raises an alarm, shown with severity and value.
    device.set_u16(1, 80);
    let alarm_row = "document.querySelector('#alarms-body tr[data-alarm^=\"press.temp|\"]')";
    b.wait_for(
        "the alarm appears",
        &format!("{alarm_row} !== null"),
        Duration::from_secs(20),
    )
    .await?;
    let cells = b.eval(&format!("{alarm_row}.innerText"))?;
    let cells = cells.as_str().unwrap_or("");
    ensure!(
        cells.contains("CRITICAL") && cells.contains("80") && cells.contains("NOT ACKNOWLEDGED"),
        "{cells:?}"
    );

    // Without credentials the page's acknowledge is refused.
    b.eval(&format!("{alarm_row}.querySelector('button.ack').click()"))?;
    b.wait_for(
        "the refusal is shown",
        "document.getElementById('ack-msg').textContent.includes('(401)')",
        Duration::from_secs(10),
    )
    .await?;
    let s = api(&client, port).await?;
    ensure!(
        s["alarms"]["active"][0]["acknowledged"] == false,
        "acknowledged without credentials: {s}"
    );
    // A wrong token too; then the right one.
    b.eval("document.getElementById('ack-token').value = 'not-the-token'")?;
    b.eval(&format!("{alarm_row}.querySelector('button.ack').click()"))?;
    b.wait_for("the wrong token is refused", "document.getElementById('ack-msg').textContent.includes('(401)') && !document.querySelector('#alarms-body button.ack').disabled", Duration::from_secs(10)).await?;
    b.eval(&format!(
        "document.getElementById('ack-token').value = '{PAGE_TOKEN}'"
    ))?;
    b.eval(&format!("{alarm_row}.querySelector('button.ack').click()"))?;
    b.wait_for(
        "the alarm shows acknowledged",
        &format!("{alarm_row} !== null && {alarm_row}.querySelector('.ackcell').textContent.startsWith('ACKNOWLEDGED')"),
        Duration::from_secs(10),
    )
    .await?;
    let s = api(&client, port).await?;
    let rule = s["alarms"]["active"][0]["rule"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    ensure!(s["alarms"]["active"][0]["acknowledged"] == true, "{s}");
    let recent: Vec<&str> = s["alarms"]["recent"]
        .as_array()
        .map(|r| r.iter().filter_map(|e| e["state"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        recent.starts_with(&["acknowledged", "raised"]),
        "recent events, newest first: {recent:?}"
    );

    // Accessibility basics, and the screenshots of every view.
    let bad = b.eval(ACCESSIBLE)?;
    ensure!(bad == json!([]), "accessibility: {bad}");
    let diff = b.eval(SCRIPT_MATCHES_SERVER)?;
    ensure!(
        diff == json!([]),
        "the script's rows differ from the server's: {diff:#}"
    );
    b.screenshots(1280, "")?;
    b.viewport(390, 844)?;
    let overflow = b.eval("document.documentElement.scrollWidth <= window.innerWidth")?;
    ensure!(
        overflow == json!(true),
        "the page is wider than a 390 px phone"
    );
    b.screenshots(390, "")?;
    b.viewport(1280, 900)?;

    // The API's own refusals.
    let post = |auth: Option<&str>, body: Value| {
        let mut r = client
            .post(format!("http://127.0.0.1:{port}/api/alarms/ack"))
            .header("Content-Type", "application/json")
            .body(body.to_string());
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        r.send()
    };
    let bearer = format!("Bearer {PAGE_TOKEN}");
    let r = post(
        Some(&bearer),
        json!({"series": "press.temp", "rule": "no.such"}),
    )
    .await?;
    ensure!(r.status() == 404, "no such alarm: {}", r.status());
    let r = post(Some(&bearer), json!({"alarm": "x"})).await?;
    ensure!(r.status() == 400, "bad body: {}", r.status());
    let r = post(
        Some("Bearer wrong"),
        json!({"series": "press.temp", "rule": rule}),
    )
    .await?;
    ensure!(
        r.status() == 401 && r.headers().contains_key("www-authenticate"),
        "bad token: {}",
        r.status()
    );
    let r = post(Some(&bearer), json!({"series": "press.temp", "rule": rule})).await?;
    let answer: Value = serde_json::from_str(&r.text().await?)?;
    ensure!(
        answer == json!({"acknowledged": true, "already": true}),
        "{answer}"
    );

    // No secret on any answer.
    for path in ["/", "/api/status", "/metrics", "/healthz"] {
        let body = client
            .get(format!("http://127.0.0.1:{port}{path}"))
            .send()
            .await?
            .text()
            .await?;
        for secret in [UPLINK_TOKEN, MQTT_PASSWORD, PAGE_TOKEN] {
            ensure!(!body.contains(secret), "{path} shows a secret");
        }
    }

    // The agent stops: the page says so. The ack is in the spool.
    agent.stop().await?;
    b.wait_for("the lost-agent banner", "!document.getElementById('lost').hidden && document.getElementById('lost').textContent.startsWith('Lost contact with the agent')", 3 * PAGE_POLL).await?;
    b.call(json!({"cmd": "screenshot", "path": screenshot_dir().join("lost-1280.png"), "selector": "body"}))?;
    let path = spool_path.clone();
    let acked =
        tokio::task::spawn_blocking(move || Spool::open(&path)?.acknowledged_alarms()).await??;
    ensure!(
        acked
            .iter()
            .any(|(s, r, _)| s == "press.temp" && *r == rule),
        "the spool holds no acknowledgement of press.temp {rule}: {acked:?}"
    );

    // Restarted, the agent still has it acknowledged, and the page recovers.
    let agent = start_agent(&text)?;
    b.wait_for(
        "the banner goes",
        "document.getElementById('lost').hidden",
        Duration::from_secs(20),
    )
    .await?;
    b.wait_for(
        "still acknowledged after the restart",
        &format!("{alarm_row} !== null && {alarm_row}.querySelector('.ackcell').textContent.startsWith('ACKNOWLEDGED')"),
        Duration::from_secs(20),
    )
    .await?;
    let s = api(&client, port).await?;
    ensure!(
        s["alarms"]["active"][0]["acknowledged"] == true,
        "after restart: {s}"
    );
    drop(b);
    agent.stop().await?;
    stop_device.cancel();
    cable.pull();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn page_without_auth_is_read_only_and_refuses_the_ack() -> anyhow::Result<()> {
    let device = SimDevice::new();
    device.set_u16(0, 1);
    device.set_u16(1, 90);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop_device = CancellationToken::new();
    tokio::spawn(device.clone().serve(listener, stop_device.clone()));
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let agent = start_agent(&config(&dir.path().join("spool.db"), addr, port, None))?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    let s = poll_api(&client, port, "the alarm is raised", |s| {
        s["alarms"]["active"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    })
    .await?;
    ensure!(s["alarms"]["ack"] == json!([]), "{s}");

    let mut b = Browser::start()?;
    b.goto(&format!("http://127.0.0.1:{port}/"))?;
    let alarm_row = "document.querySelector('#alarms-body tr[data-alarm^=\"press.temp|\"]')";
    b.wait_for(
        "the alarm shows",
        &format!("{alarm_row} !== null"),
        Duration::from_secs(10),
    )
    .await?;
    // Two polls later still no control to act with.
    b.wait_for(
        "two polls",
        "Number(document.body.dataset.polls) >= 2",
        3 * PAGE_POLL,
    )
    .await?;
    let controls = b.eval("document.querySelectorAll('button, input').length")?;
    ensure!(
        controls == json!(0),
        "read-only page has {controls} buttons or inputs"
    );
    let text = b.eval(&format!(
        "{alarm_row}.querySelector('.ackcell').textContent"
    ))?;
    ensure!(text == json!("NOT ACKNOWLEDGED"), "{text}");
    // The action itself, from the page's origin and from outside.
    let code = b.eval(&format!(
        "fetch('/api/alarms/ack', {{method: 'POST', headers: {{'Content-Type': 'application/json', 'Authorization': 'Bearer {PAGE_TOKEN}'}}, body: JSON.stringify({{series: 'press.temp', rule: 'temp.high'}})}}).then(r => r.status)"
    ))?;
    ensure!(code == json!(403), "page's fetch answered {code}");
    let r = client
        .post(format!("http://127.0.0.1:{port}/api/alarms/ack"))
        .header("Content-Type", "application/json")
        .body(json!({"series": "press.temp", "rule": s["alarms"]["active"][0]["rule"]}).to_string())
        .send()
        .await?;
    ensure!(
        r.status() == 403,
        "POST without [status.auth]: {}",
        r.status()
    );
    let bad = b.eval(ACCESSIBLE)?;
    ensure!(bad == json!([]), "accessibility: {bad}");
    let s = api(&client, port).await?;
    ensure!(s["alarms"]["active"][0]["acknowledged"] == false, "{s}");
    drop(b);
    agent.stop().await?;
    stop_device.cancel();
    Ok(())
}
