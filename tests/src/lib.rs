//! Helpers for the end-to-end tests: start real services (tansu as the Kafka
//! broker, VictoriaMetrics and InfluxDB 1.x as time-series stores, Mosquitto
//! as the MQTT broker) on free loopback ports, wait for them by polling with a deadline,
//! and stop them when the test ends (the process is killed when its handle
//! drops).
//!
//! [`proxy::RoundRobin`] is a round-robin TCP load balancer that can lose
//! answers, for a fleet of relays.
//!
//! [`PtyPair`] gives a serial line without hardware: two pseudo-terminals
//! joined by socat, one for the agent and one for the device.
//!
//! The services must be installed; `scripts/test` installs them. A missing
//! one fails the test with a message that says so.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A port nobody listens on right now, on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(l.local_addr()?.port())
}

/// Poll `check` until it returns true or `timeout` passes.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{what} was not ready after {} s", timeout.as_secs())
}

/// [`wait_until`] for async tests: poll `check` every 20 ms until it holds
/// or `timeout` passes, sleeping on the runtime instead of blocking it.
pub async fn wait_for_async(
    what: &str,
    timeout: Duration,
    check: impl Fn() -> bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    while !check() {
        if tokio::time::Instant::now() >= deadline {
            bail!("{what}: not reached within {} s", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A child process that is killed when this handle drops.
pub struct Service {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Service {
    fn spawn(
        name: &'static str,
        program: &str,
        args: &[String],
        log_dir: &Path,
    ) -> anyhow::Result<Service> {
        let log = log_dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| {
                format!("cannot start {program}: is it installed? scripts/test installs it")
            })?;
        Ok(Service { name, child, log })
    }

    /// The service's output so far, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The process id, for reading `/proc/PID/status`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The service's whole output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `Some(status)` once the process has exited.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited early ({status}):\n{}",
                self.name,
                self.log_tail()
            );
        }
        Ok(())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two pseudo-terminals joined by socat: what is written to one is read
/// from the other, like the two ends of a serial cable. socat is killed
/// when this drops.
pub struct PtyPair {
    _socat: Service,
    /// The end for the agent.
    pub a: PathBuf,
    /// The end for the device.
    pub b: PathBuf,
}

impl PtyPair {
    pub fn start(dir: &Path) -> anyhow::Result<PtyPair> {
        let (a, b) = (dir.join("tty-agent"), dir.join("tty-device"));
        let end = |p: &Path| format!("pty,raw,echo=0,link={}", p.display());
        let mut socat = Service::spawn("socat", "socat", &[end(&a), end(&b)], dir)?;
        wait_until("socat pty pair", Duration::from_secs(10), || {
            a.exists() && b.exists()
        })
        .with_context(|| socat.log_tail())?;
        socat.ensure_running()?;
        Ok(PtyPair {
            _socat: socat,
            a,
            b,
        })
    }
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// tansu, a Kafka-compatible broker, with in-memory storage.
pub struct Tansu {
    pub service: Service,
    pub port: u16,
}

impl Tansu {
    /// A broker with in-memory storage on a free port.
    pub fn start(log_dir: &Path) -> anyhow::Result<Tansu> {
        Tansu::start_with(log_dir, free_port()?, "memory://tansu/")
    }

    /// A broker on `port` with the given storage engine URL, for example
    /// `sqlite://DIR/tansu.db` to keep messages across a restart.
    pub fn start_with(log_dir: &Path, port: u16, storage: &str) -> anyhow::Result<Tansu> {
        let url = format!("tcp://127.0.0.1:{port}");
        let args = [
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            storage,
        ]
        .map(String::from);
        let mut service = Service::spawn("tansu", "tansu", &args, log_dir)?;
        wait_until("tansu", Duration::from_secs(30), || port_open(port))?;
        service.ensure_running()?;
        Ok(Tansu { service, port })
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Create `name` with tansu's default partition count (3).
    pub fn create_topic(&self, name: &str) -> anyhow::Result<()> {
        self.create_topic_with_partitions(name, 3)
    }

    /// Create `name` with `partitions` partitions.
    pub fn create_topic_with_partitions(&self, name: &str, partitions: u32) -> anyhow::Result<()> {
        let out = Command::new("tansu")
            .args([
                "topic",
                "create",
                "--broker",
                &format!("tcp://127.0.0.1:{}", self.port),
                "--partitions",
                &partitions.to_string(),
                name,
            ])
            .output()
            .context("cannot run `tansu topic create`")?;
        if !out.status.success() {
            bail!(
                "tansu topic create {name} --partitions {partitions} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Every message of `topic`, read back with kafka-python.
    pub fn read_topic(&self, topic: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/kafka_read.py");
        let out = Command::new("python3")
            .arg(&script)
            .args([&self.bootstrap(), topic, "3000"])
            .output()
            .context("cannot run python3 (kafka-python is installed by scripts/test)")?;
        if !out.status.success() {
            bail!(
                "kafka_read.py {topic} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8(out.stdout)?
            .lines()
            .map(|l| {
                serde_json::from_str(l).with_context(|| format!("bad line from kafka_read.py: {l}"))
            })
            .collect()
    }
}

/// VictoriaMetrics single-node, storing in a temporary directory.
pub struct Victoria {
    pub service: Service,
    pub port: u16,
    _data: tempfile::TempDir,
}

impl Victoria {
    pub fn start(log_dir: &Path) -> anyhow::Result<Victoria> {
        let port = free_port()?;
        let data = tempfile::tempdir()?;
        let args = [
            format!("-httpListenAddr=127.0.0.1:{port}"),
            format!("-storageDataPath={}", data.path().display()),
            // Replayed and test data may be older than the default one month.
            "-retentionPeriod=100y".into(),
        ];
        let mut service = Service::spawn("victoria-metrics", "victoria-metrics", &args, log_dir)?;
        let health = format!("http://127.0.0.1:{port}/health");
        wait_until("victoria-metrics", Duration::from_secs(30), || {
            http_get(&health).is_ok_and(|b| b.trim() == "OK")
        })?;
        service.ensure_running()?;
        Ok(Victoria {
            service,
            port,
            _data: data,
        })
    }

    /// The Influx line protocol write endpoint.
    pub fn write_url(&self) -> String {
        format!("http://127.0.0.1:{}/write", self.port)
    }

    /// Every series matching `selector`, as `/api/v1/export` JSON lines,
    /// after making fresh writes visible.
    pub fn export(&self, selector: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let base = format!("http://127.0.0.1:{}", self.port);
        http_get(&format!("{base}/internal/force_flush"))?;
        let url = reqwest::Url::parse_with_params(
            &format!("{base}/api/v1/export"),
            [("match[]", selector)],
        )?;
        let body = http_get(url.as_str())?;
        body.lines()
            .map(|l| serde_json::from_str(l).with_context(|| format!("bad export line: {l}")))
            .collect()
    }
}

/// Mosquitto, an MQTT broker, listening on 127.0.0.1 only, anonymous.
pub struct Mosquitto {
    pub service: Service,
    /// The plain TCP listener, which [`Mosquitto::publish`] uses.
    pub port: u16,
    /// The second listener, when started with [`Mosquitto::start_tls`] (TLS)
    /// or [`Mosquitto::start_login`] (user name and password required).
    pub secured_port: Option<u16>,
}

/// The certificates of a TLS listener (PEM files).
pub struct BrokerTls<'a> {
    /// CA that client certificates must chain to.
    pub ca_file: &'a Path,
    pub cert_file: &'a Path,
    pub key_file: &'a Path,
    /// Refuse clients without a certificate signed by `ca_file` (mutual TLS).
    pub require_certificate: bool,
}

impl Mosquitto {
    /// Start a broker on a free port.
    pub fn start(log_dir: &Path) -> anyhow::Result<Mosquitto> {
        Mosquitto::start_on(log_dir, free_port()?)
    }

    /// Start a broker on `port`, for example again after stopping one there.
    pub fn start_on(log_dir: &Path, port: u16) -> anyhow::Result<Mosquitto> {
        Mosquitto::start_with(log_dir, port, None)
    }

    /// Start a broker with a plain listener (for publishing) and a TLS
    /// listener, each on a free port.
    pub fn start_tls(log_dir: &Path, tls: &BrokerTls) -> anyhow::Result<Mosquitto> {
        let settings = format!(
            "allow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {}\n",
            tls.ca_file.display(),
            tls.cert_file.display(),
            tls.key_file.display(),
            tls.require_certificate
        );
        Mosquitto::start_with(log_dir, free_port()?, Some((free_port()?, settings)))
    }

    /// Start a broker with a plain anonymous listener (for publishing) and
    /// one that only lets `user` with `password` in, each on a free port.
    pub fn start_login(log_dir: &Path, user: &str, password: &str) -> anyhow::Result<Mosquitto> {
        let port = free_port()?;
        let file = log_dir.join(format!("mosquitto-{port}.passwd"));
        let out = Command::new("mosquitto_passwd")
            .arg("-c")
            .arg("-b")
            .arg(&file)
            .args([user, password])
            .output()
            .context("cannot run mosquitto_passwd: is mosquitto installed?")?;
        if !out.status.success() {
            bail!(
                "mosquitto_passwd failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // The broker reads it after dropping root for its own user.
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        let settings = format!("allow_anonymous false\npassword_file {}\n", file.display());
        Mosquitto::start_with(log_dir, port, Some((free_port()?, settings)))
    }

    /// `secured`: a second listener's port and its settings.
    fn start_with(
        log_dir: &Path,
        port: u16,
        secured: Option<(u16, String)>,
    ) -> anyhow::Result<Mosquitto> {
        let conf = log_dir.join(format!("mosquitto-{port}.conf"));
        // QoS 1 messages for a persistent session that is away are queued
        // without limit (the default keeps 1000 and drops the rest).
        let mut text = format!(
            "per_listener_settings true\nmax_queued_messages 0\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
        );
        if let Some((secured_port, settings)) = &secured {
            text += &format!("listener {secured_port} 127.0.0.1\n{settings}");
        }
        std::fs::write(&conf, text)?;
        let args = ["-c".to_string(), conf.display().to_string()];
        // Debian installs the broker in /usr/sbin, which a user's PATH may lack.
        let program = if Path::new("/usr/sbin/mosquitto").exists() {
            "/usr/sbin/mosquitto"
        } else {
            "mosquitto"
        };
        let mut service = Service::spawn("mosquitto", program, &args, log_dir)?;
        let secured_port = secured.map(|(p, _)| p);
        wait_until("mosquitto", Duration::from_secs(10), || {
            port_open(port) && secured_port.is_none_or(port_open)
        })?;
        service.ensure_running()?;
        Ok(Mosquitto {
            service,
            port,
            secured_port,
        })
    }

    /// Publish one message with `mosquitto_pub`; returns once the broker has it.
    pub fn publish(&self, topic: &str, payload: &str, qos: u8) -> anyhow::Result<()> {
        let out = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-t", topic, "-m", payload, "-q", &qos.to_string()])
            .output()
            .context("cannot run mosquitto_pub: is mosquitto-clients installed?")?;
        if !out.status.success() {
            bail!(
                "mosquitto_pub to {topic} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Mosquitto {
    /// Publish one message per line with one `mosquitto_pub -l`; returns once
    /// the broker has them all (QoS 1: acknowledged).
    pub fn publish_lines(&self, topic: &str, lines: &[String], qos: u8) -> anyhow::Result<()> {
        use std::io::Write;
        let mut child = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-t", topic, "-l", "-q", &qos.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run mosquitto_pub: is mosquitto-clients installed?")?;
        let mut stdin = child.stdin.take().context("mosquitto_pub stdin")?;
        for line in lines {
            writeln!(stdin, "{line}")?;
        }
        drop(stdin);
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "mosquitto_pub -l to {topic} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

/// The `edge-agent` binary of this build, for tests that run the agent as
/// a process (to kill it). `cargo test -p edge-tests` does not build other
/// packages' binaries, so this runs `cargo build -p edge-agent --bin
/// edge-agent` into the target directory this test binary was built in
/// (a no-op when it is up to date) and returns `<target>/<profile>/edge-agent`.
pub fn agent_binary() -> anyhow::Result<PathBuf> {
    workspace_binary("edge-agent")
}

/// The `edge-relay` binary of this build, as [`agent_binary`].
pub fn relay_binary() -> anyhow::Result<PathBuf> {
    workspace_binary("edge-relay")
}

/// The binary `name` of the workspace package of the same name, built into
/// this test binary's target directory.
fn workspace_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // <target>/<profile>/deps/e2e-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary is not in <target>/<profile>/deps")?;
    let target_dir = profile_dir.parent().context("no target directory")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "-p", name, "--bin", name])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let out = build
        .output()
        .with_context(|| format!("cannot run cargo to build {name}"))?;
    if !out.status.success() {
        bail!(
            "cargo build -p {name} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bin = profile_dir.join(name);
    if !bin.exists() {
        bail!("{} was not built", bin.display());
    }
    Ok(bin)
}

/// A program of this workspace run as a child process, its output in
/// `log_dir/<name>.log`; killed (SIGKILL) when the handle drops.
pub fn spawn(
    name: &'static str,
    program: &Path,
    args: &[String],
    log_dir: &Path,
) -> anyhow::Result<Service> {
    Service::spawn(name, &program.display().to_string(), args, log_dir)
}

impl Service {
    /// Kill the process with SIGKILL, as a power cut or the OOM killer would,
    /// and wait for it to be gone.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

/// The value of the sample `name` on a Prometheus text page: the
/// unlabelled sample, or the sum over its labels; `None` when absent.
pub fn metric(page: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = page
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// A blocking HTTP GET that fails on a non-2xx answer.
pub fn http_get(url: &str) -> anyhow::Result<String> {
    let resp = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?
        .get(url)
        .send()?
        .error_for_status()?;
    Ok(resp.text()?)
}

/// An encoded batch of `gateway` with one series (`press-1.oil_temp`) of
/// `points` good readings a second apart, ending a second ago, so the
/// relay's time window accepts it.
pub fn recent_batch(gateway: &str, seq: u64, points: i64) -> Vec<u8> {
    use edge_wire::{Batch, Point, Quality, Series};
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    let batch = Batch {
        gateway_id: gateway.into(),
        instance: None,
        seq,
        created_us: now_us,
        series: vec![Series {
            id: 1,
            name: "press-1.oil_temp".into(),
            unit: "degC".into(),
            tags: Default::default(),
            points: (0..points)
                .map(|i| Point {
                    ts_us: now_us - (points - i) * 1_000_000,
                    value: 70.0 + i as f64,
                    quality: Quality::Good,
                })
                .collect(),
            reporting: None,
        }],
        alarms: Vec::new(),
        gaps: Vec::new(),
        devices: Vec::new(),
    };
    edge_wire::encode(&batch).expect("a small batch encodes")
}

/// A decompression bomb as an attacker with a leaked token would send it:
/// a valid batch prefix, then a zstd frame without a content size (window
/// 128 KiB) of `blocks` RLE blocks of 128 KiB of zeros, 4 bytes each on the
/// wire (8,192 blocks: 32 KiB that would inflate to 1 GiB).
pub fn zstd_bomb(blocks: u32) -> Vec<u8> {
    let mut out = b"EDGB".to_vec();
    out.extend_from_slice(&edge_wire::FORMAT_VERSION.to_be_bytes());
    out.extend_from_slice(&0xFD2F_B528u32.to_le_bytes());
    out.push(0); // no content size, no checksum, not single-segment
    out.push(7 << 3); // window 2^17
    for i in 0..blocks {
        let last = u32::from(i + 1 == blocks);
        let header = last | (1 << 1) | (131_072 << 3);
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.push(0);
    }
    out
}

/// True once an `edge-relay` answers uploads on `port`: a POST without a
/// token gets 401 (the relay's `/healthz` is on its operations listener).
pub fn relay_answers(port: u16) -> bool {
    let Ok(client) = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
    else {
        return false;
    };
    client
        .post(format!("http://127.0.0.1:{port}/v1/batches"))
        .send()
        .is_ok_and(|r| r.status() == reqwest::StatusCode::UNAUTHORIZED)
}

/// InfluxDB 1.x (`influxd` from Debian's `influxdb` package), storing in a
/// temporary directory, with its HTTP API and its RPC port on free loopback
/// ports and usage reporting off.
pub struct Influxd {
    pub service: Service,
    /// The HTTP API port (`/ping`, `/write`, `/query`).
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Influxd {
    pub fn start(log_dir: &Path) -> anyhow::Result<Influxd> {
        let (port, rpc) = (free_port()?, free_port()?);
        let dir = tempfile::tempdir()?;
        let d = dir.path().display();
        let conf = dir.path().join("influxdb.conf");
        std::fs::write(
            &conf,
            format!(
                "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
                 [meta]\ndir = \"{d}/meta\"\n\
                 [data]\ndir = \"{d}/data\"\nwal-dir = \"{d}/wal\"\nquery-log-enabled = false\n\
                 [http]\nbind-address = \"127.0.0.1:{port}\"\nlog-enabled = false\n\
                 [monitor]\nstore-enabled = false\n\
                 [continuous_queries]\nenabled = false\n\
                 [subscriber]\nenabled = false\n"
            ),
        )?;
        let args = ["run", "-config", &conf.display().to_string()].map(String::from);
        let mut service = Service::spawn("influxd", "influxd", &args, log_dir)?;
        let ping = format!("http://127.0.0.1:{port}/ping");
        wait_until("influxd", Duration::from_secs(30), || {
            http_get(&ping).is_ok()
        })
        .with_context(|| service.log_tail())?;
        service.ensure_running()?;
        Ok(Influxd {
            service,
            port,
            _dir: dir,
        })
    }

    /// The base URL, `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The line protocol write endpoint of database `db`.
    pub fn write_url(&self, db: &str) -> String {
        format!("{}/write?db={db}", self.base())
    }

    /// Run an InfluxQL statement that changes something (`CREATE DATABASE`).
    pub fn execute(&self, statement: &str) -> anyhow::Result<()> {
        let url =
            reqwest::Url::parse_with_params(&format!("{}/query", self.base()), [("q", statement)])?;
        let answer = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()?
            .post(url)
            .send()?
            .error_for_status()?
            .text()?;
        if answer.contains("\"error\"") {
            bail!("influxd refused {statement:?}: {answer}");
        }
        Ok(())
    }

    /// The result of an InfluxQL query on `db`, timestamps in microseconds.
    pub fn query(&self, db: &str, query: &str) -> anyhow::Result<serde_json::Value> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/query", self.base()),
            [("db", db), ("epoch", "u"), ("q", query)],
        )?;
        let response = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()?
            .get(url)
            .send()?;
        let status = response.status();
        let text = response.text()?;
        if !status.is_success() {
            bail!("influxd query {query:?} answered {status}: {text}");
        }
        let answer: serde_json::Value = serde_json::from_str(&text)?;
        if let Some(error) = answer["results"][0]["error"].as_str() {
            bail!("influxd query {query:?} failed: {error}");
        }
        Ok(answer)
    }
}

impl Service {
    /// Send SIGTERM (as systemd or Kubernetes would to stop a service) and
    /// wait at most `timeout` for the process to exit, polling.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status()?;
        if !sent.success() {
            bail!("kill -TERM {pid} ({}) failed", self.name);
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "{} did not exit within {timeout:?} of SIGTERM:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub mod proxy;
