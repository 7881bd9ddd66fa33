//! `/`: the technician's page, server-rendered from a [`View`], with its CSS
//! and a small script inline (gateways are often offline: nothing is
//! fetched from anywhere but the agent).
//!
//! The script polls `/api/status` every two seconds and redraws the same
//! rows from the JSON the way [`render`] draws them here (the row markup
//! is written twice, once in each language, and the page's end-to-end
//! test checks the script's rows against the server's), shows "last
//! updated" and, when a poll fails, a banner saying the page lost the
//! agent; it filters the points by device and sends acknowledgements with
//! the credentials typed in.
//!
//! Guarantees: every text from the view is escaped ([`escape`],
//! `text_is_escaped`); every state is written in words as well as colour
//! (DOWN, DEGRADED, STALE, ACKNOWLEDGED); every control has a label; the
//! acknowledge buttons and the credential fields exist only when the view
//! says the action is configured (`no_buttons_without_auth`). Narrower
//! than 640 px, table rows become stacked cards, each cell with its label
//! (from the column names, in the CSS). Above
//! [`ALL_POINTS_UP_TO`] points the page shows one device's points at a
//! time ([`super::view::select_points`]), so it stays small on a large
//! gateway.

use std::fmt::Write;

use super::view::{state_words, DeviceView, View, ALL_POINTS_UP_TO};
use crate::points::PointView;
use crate::publish::board::RaisedAlarm;
use crate::reading::Alarm;

/// `s` safe inside HTML text and double-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An age as the page words it (the script's `age` says the same).
pub fn age(now_us: i64, t_us: Option<i64>) -> String {
    let Some(t) = t_us else {
        return "never".into();
    };
    let s = (now_us - t).max(0) as f64 / 1e6;
    if s < 120.0 {
        format!("{} s ago", s.floor())
    } else if s < 7200.0 {
        format!("{} min ago", (s / 60.0).floor())
    } else {
        format!("{} h ago", (s / 3600.0).floor())
    }
}

/// The time of day of `t_us`, in UTC, for the page's first "last updated"
/// (the script then writes the browser's local time).
fn clock(t_us: i64) -> String {
    let s = t_us.div_euclid(1_000_000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
}

fn num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => "–".into(),
    }
}

fn td(out: &mut String, class: &str, content: &str) {
    if class.is_empty() {
        let _ = write!(out, "<td>{content}</td>");
    } else {
        let _ = write!(out, "<td class=\"{class}\">{content}</td>");
    }
}

fn device_row(out: &mut String, now: i64, d: &DeviceView) {
    let state = d.status.state;
    let id = format!("{}/{}", d.key.kind.as_str(), d.key.name);
    let _ = write!(
        out,
        "<tr data-device=\"{}\" class=\"st-{}\">",
        escape(&id),
        state.as_str()
    );
    td(out, "", d.key.kind.as_str());
    td(out, "name", &escape(&d.key.name));
    td(
        out,
        "state",
        &format!("<span class=\"badge\">{}</span>", state_words(state)),
    );
    td(out, "", &age(now, Some(d.status.since_us)));
    td(out, "", &age(now, d.status.last_ok_us));
    let reason = d
        .status
        .reason
        .as_ref()
        .map(|r| escape(&r.detail))
        .unwrap_or_default();
    td(out, "reason", &reason);
    td(out, "", &d.received.to_string());
    let errors: Vec<String> = d
        .errors
        .iter()
        .map(|(k, n)| format!("{} {n}", escape(k)))
        .collect();
    td(out, "errors", &errors.join(", "));
    td(
        out,
        "",
        &d.round_trip_ms
            .map(|ms| format!("{ms:.1} ms"))
            .unwrap_or_else(|| "–".into()),
    );
    out.push_str("</tr>");
}

fn point_row(out: &mut String, p: &PointView) {
    let _ = write!(
        out,
        "<tr data-series=\"{}\" data-device=\"{}\" class=\"{}\">",
        escape(&p.series),
        escape(&p.point.device),
        if p.stale { "stale" } else { "fresh" }
    );
    td(out, "name", &escape(&p.series));
    td(out, "", &escape(&p.point.device));
    td(out, "value", &num(p.point.value));
    td(out, "", &escape(&p.point.unit));
    td(out, "", p.point.quality.map(|q| q.as_str()).unwrap_or("–"));
    let age = match p.age_us {
        Some(a) => format!("{} s", (a as f64 / 1e6).floor()),
        None => "no value yet".into(),
    };
    td(out, "", &age);
    td(out, "fresh-word", if p.stale { "STALE" } else { "fresh" });
    out.push_str("</tr>");
}

fn alarm_row(out: &mut String, now: i64, a: &RaisedAlarm, can_ack: bool) {
    let _ = write!(
        out,
        "<tr data-alarm=\"{}|{}\" class=\"sev-{} {}\">",
        escape(&a.series),
        escape(&a.rule),
        a.severity.as_str(),
        if a.acked_us.is_some() {
            "acked"
        } else {
            "unacked"
        }
    );
    td(out, "sev", &a.severity.as_str().to_uppercase());
    td(out, "name", &escape(&a.series));
    td(out, "", &escape(&a.rule));
    td(out, "", &format!("{} {}", num(a.value), escape(&a.unit)));
    td(out, "", &num(Some(a.limit)));
    td(out, "", &age(now, Some(a.raised_us)));
    let ack = if a.acked_us.is_some() {
        format!("ACKNOWLEDGED {}", age(now, a.acked_us))
    } else if can_ack {
        format!(
            "NOT ACKNOWLEDGED <button type=\"button\" class=\"ack\" data-series=\"{s}\" data-rule=\"{r}\" aria-label=\"Acknowledge {r} on {s}\">Acknowledge</button>",
            s = escape(&a.series),
            r = escape(&a.rule)
        )
    } else {
        "NOT ACKNOWLEDGED".into()
    };
    td(out, "ackcell", &ack);
    out.push_str("</tr>");
}

fn history_row(out: &mut String, now: i64, a: &Alarm) {
    out.push_str("<tr>");
    td(out, "", &age(now, Some(a.ts_us)));
    td(out, "", &a.state.as_str().to_uppercase());
    td(out, "", a.severity.as_str());
    td(out, "", &escape(&a.series.name));
    td(out, "", &escape(&a.rule));
    td(out, "", &num(Some(a.value)));
    out.push_str("</tr>");
}

fn overview(out: &mut String, v: &View) {
    let now = v.now_us;
    let u = &v.uplink;
    let mut item = |label: &str, id: &str, value: String| {
        let _ = write!(out, "<dt>{label}</dt><dd id=\"ov-{id}\">{value}</dd>");
    };
    item("Gateway", "gateway", escape(&v.gateway_id));
    item("Version", "version", escape(v.version));
    item(
        "Uptime",
        "uptime",
        format!("{} s", ((now - v.started_us).max(0) / 1_000_000)),
    );
    item(
        "Uplink",
        "uplink",
        match u.connected {
            Some(true) => "<span class=\"good\">CONNECTED</span>".into(),
            Some(false) => "<span class=\"bad\">NOT CONNECTED</span>".into(),
            None => "no upload yet".into(),
        },
    );
    item("Last upload", "last-success", age(now, u.last_success_us));
    item(
        "Backlog",
        "backlog",
        format!(
            "{} readings, {} bytes, {} batches",
            u.backlog_readings, u.backlog_bytes, u.backlog_batches
        ),
    );
    item("Oldest unsent", "oldest", age(now, u.oldest_unsent_us));
    item(
        "Drain rate",
        "drain",
        u.drain_per_s
            .map(|r| format!("{r:.1} readings/s"))
            .unwrap_or_else(|| "–".into()),
    );
    item(
        "Time to empty",
        "empty",
        u.time_to_empty_s
            .map(|s| format!("{s:.0} s"))
            .unwrap_or_else(|| "not draining".into()),
    );
    let spool = match &v.spool {
        Some(s) => format!(
            "{} of {} bytes, max age {}, on full {}; dropped {} (full) + {} (age) readings, {} gaps, {} quarantined",
            s.used_bytes,
            if s.bound_bytes == 0 { "no bound".to_string() } else { s.bound_bytes.to_string() },
            s.max_age_s.map(|a| format!("{a} s")).unwrap_or_else(|| "none".into()),
            s.on_full,
            s.dropped_full,
            s.dropped_age,
            s.gaps,
            s.quarantined
        ),
        None => "<span class=\"bad\">cannot read the spool</span>".into(),
    };
    item("Spool", "spool", spool);
}

fn health(out: &mut String, v: &View) {
    if v.health.is_empty() {
        out.push_str("<li class=\"good\">HEALTHY: no condition failed</li>");
    }
    for (c, m) in &v.health {
        let _ = write!(
            out,
            "<li class=\"bad\">UNHEALTHY: {}: {}</li>",
            escape(c),
            escape(m)
        );
    }
}

const STYLE: &str = r#"
:root{--ok:#1b7f3b;--deg:#a15c00;--down:#b00020;--pend:#555;font-family:system-ui,sans-serif}
body{margin:0;padding:0 1rem 2rem;line-height:1.4;color:#111;background:#fafafa}
header{display:flex;flex-wrap:wrap;gap:.5rem 2rem;align-items:baseline}
h1{font-size:1.4rem;margin:.8rem 0 0}h2{font-size:1.2rem;margin:1.5rem 0 .5rem}
nav a{margin-right:1rem}
.banner{background:var(--down);color:#fff;padding:.8rem 1rem;font-weight:700;font-size:1.1rem;margin:0 -1rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0}dt{font-weight:600}dd{margin:0}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ddd;vertical-align:top}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:.3rem;font-weight:700;color:#fff;background:var(--pend)}
.st-ok .badge{background:var(--ok)}.st-degraded .badge{background:var(--deg)}
.st-down{background:#fde7ea}.st-down .badge{background:var(--down);font-size:1.3rem}
.st-down .name{font-weight:700;color:var(--down)}
.stale{background:#fff4e0}.stale .fresh-word{font-weight:700;color:var(--deg)}
.sev-critical .sev{color:var(--down);font-weight:700}.sev-major .sev{color:var(--deg);font-weight:700}
.unacked .ackcell{font-weight:700}
.good{color:var(--ok);font-weight:600}.bad{color:var(--down);font-weight:700}
button,input,select{font:inherit;padding:.3rem .6rem}
button{min-height:2.2rem}
form{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;margin:.5rem 0}
@media (max-width:640px){
 table,thead,tbody,tr,th,td{display:block}thead{display:none}
 tr{border:1px solid #ccc;border-radius:.4rem;margin:.5rem 0;padding:.3rem}
 td{border:0;padding:.15rem .3rem}
 td::before{font-weight:600}
 dl{grid-template-columns:1fr}dd{margin-bottom:.3rem}
}
"#;

/// The page's script (plain ES2017, no library).
const SCRIPT: &str = include_str!("page.js");

const DEVICE_COLS: &[&str] = &[
    "Source",
    "Device",
    "State",
    "Since",
    "Last success",
    "Reason",
    "Received",
    "Errors",
    "Round trip",
];
const POINT_COLS: &[&str] = &[
    "Point", "Device", "Value", "Unit", "Quality", "Age", "Fresh",
];
const ALARM_COLS: &[&str] = &[
    "Severity",
    "Series",
    "Alarm",
    "Value",
    "Limit",
    "Since",
    "Acknowledged",
];
const HISTORY_COLS: &[&str] = &["When", "Event", "Severity", "Series", "Alarm", "Value"];

/// Each stacked cell's label on a narrow screen, from the column names
/// (in the CSS once rather than in every cell).
fn labels_css() -> String {
    let mut css = String::from("@media (max-width:640px){");
    for (table, cols) in [
        ("t-devices", DEVICE_COLS),
        ("t-points", POINT_COLS),
        ("t-alarms", ALARM_COLS),
        ("t-history", HISTORY_COLS),
    ] {
        for (i, c) in cols.iter().enumerate() {
            let _ = write!(
                css,
                "#{table} td:nth-child({})::before{{content:\"{c}: \"}}",
                i + 1
            );
        }
    }
    css.push('}');
    css
}

fn table_head(out: &mut String, cols: &[&str]) {
    out.push_str("<thead><tr>");
    for c in cols {
        let _ = write!(out, "<th scope=\"col\">{c}</th>");
    }
    out.push_str("</tr></thead>");
}

/// The whole page.
pub fn render(v: &View) -> String {
    let now = v.now_us;
    let mut out = String::with_capacity(16 * 1024 + 300 * v.points.len());
    let ack = match (v.ack_token, v.ack_basic) {
        (true, true) => "bearer basic",
        (true, false) => "bearer",
        (false, true) => "basic",
        (false, false) => "",
    };
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{gw}: edge-agent status</title><style>{STYLE}{labels}</style></head>\
<body data-ack=\"{ack}\" data-all-points=\"{ALL_POINTS_UP_TO}\"><div id=\"lost\" class=\"banner\" role=\"alert\" hidden></div>\
<header><h1>Gateway {gw}</h1><p>Last updated <time id=\"updated\">{updated}</time> \
<span id=\"updated-age\"></span></p></header>\
<nav aria-label=\"Sections\"><a href=\"#overview\">Overview</a><a href=\"#devices\">Devices</a>\
<a href=\"#points\">Points</a><a href=\"#alarms\">Alarms</a></nav>",
        gw = escape(&v.gateway_id),
        updated = clock(now),
        labels = labels_css(),
    );
    out.push_str("<section id=\"overview\"><h2>Overview</h2><dl id=\"overview-list\">");
    overview(&mut out, v);
    out.push_str("</dl><h3>Health</h3><ul id=\"health\">");
    health(&mut out, v);
    out.push_str("</ul></section>");

    out.push_str("<section id=\"devices\"><h2>Devices</h2><table id=\"t-devices\">");
    table_head(&mut out, DEVICE_COLS);
    out.push_str("<tbody id=\"devices-body\">");
    for d in &v.devices {
        device_row(&mut out, now, d);
    }
    out.push_str("</tbody></table></section>");

    out.push_str("<section id=\"points\"><h2>Points</h2><form onsubmit=\"return false\"><label for=\"device-filter\">Show points of</label><select id=\"device-filter\">");
    if v.points_total <= ALL_POINTS_UP_TO {
        out.push_str("<option value=\"\">all devices</option>");
    }
    for d in &v.point_devices {
        let selected = if v.points_device.as_deref() == Some(d) {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<option value=\"{0}\"{selected}>{0}</option>",
            escape(d)
        );
    }
    let _ = write!(
        out,
        "</select></form><p id=\"points-count\">{} of {} points</p><table id=\"t-points\">",
        v.points.len(),
        v.points_total
    );
    table_head(&mut out, POINT_COLS);
    out.push_str("<tbody id=\"points-body\">");
    for p in &v.points {
        point_row(&mut out, p);
    }
    out.push_str("</tbody></table></section>");

    out.push_str("<section id=\"alarms\"><h2>Alarms</h2>");
    if v.can_ack() {
        out.push_str("<form id=\"ack-form\" onsubmit=\"return false\">");
        if v.ack_token {
            out.push_str("<label for=\"ack-token\">Access token</label><input id=\"ack-token\" type=\"password\" autocomplete=\"off\">");
        }
        if v.ack_basic {
            out.push_str("<label for=\"ack-user\">User</label><input id=\"ack-user\" autocomplete=\"username\"><label for=\"ack-password\">Password</label><input id=\"ack-password\" type=\"password\" autocomplete=\"current-password\">");
        }
        out.push_str("</form><p id=\"ack-msg\" role=\"status\" aria-live=\"polite\"></p>");
    } else {
        out.push_str("<p>Read only: acknowledging from this page needs <code>[status.auth]</code> in the agent's config.</p>");
    }
    out.push_str("<h3>Active</h3><table id=\"t-alarms\">");
    table_head(&mut out, ALARM_COLS);
    out.push_str("<tbody id=\"alarms-body\">");
    if v.alarms.is_empty() {
        out.push_str("<tr class=\"none\"><td colspan=\"7\">No active alarm</td></tr>");
    }
    for a in &v.alarms {
        alarm_row(&mut out, now, a, v.can_ack());
    }
    out.push_str("</tbody></table><h3>Recent events</h3><table id=\"t-history\">");
    table_head(&mut out, HISTORY_COLS);
    out.push_str("<tbody id=\"history-body\">");
    for a in v.history.iter().rev() {
        history_row(&mut out, now, a);
    }
    out.push_str("</tbody></table></section>");
    let _ = write!(out, "<script>{SCRIPT}</script></body></html>");
    out
}

#[cfg(test)]
mod tests;
