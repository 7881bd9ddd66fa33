//! One upload of one batch: the HTTP request to the relay and what its
//! answer means for the batch. No spool access and no retry loop here; the
//! forwarder decides what to do with each [`Outcome`].
//!
//! - 2xx: delivered (with the series table the relay says it holds, if
//!   any). A 200 whose JSON body says `"duplicate": true` (the
//!   relay had delivered this batch before, for example when its first 200
//!   was lost) is delivered too; so is one that says `"conflict": true`
//!   (the relay knew this gateway, spool instance and seq with other
//!   content and published this batch flagged), which the forwarder warns
//!   about;
//! - 400 with the reason `bad_version`: the relay does not read this wire
//!   format version ([`Outcome::TooNew`]; [`super::compat`] sends the batch
//!   again in an older one);
//! - 409 with the reason `unknown_series_table`: the batch named a series
//!   table the relay does not hold ([`Outcome::UnknownTable`];
//!   [`super::tables`] sends it again with the table);
//! - other 400s, 413 and 422: the relay will never accept these bytes
//!   (rejected);
//! - anything else (network error, timeout, 5xx, 401/403, 429): transient,
//!   with the `Retry-After` the relay asked for, if any.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::{ClientConfig, RootCertStore};

use edge_wire::codec::reference::{parse_hex, TableId};

use crate::config::UplinkConfig;

/// Media type of an encoded batch (see docs/wire-format.md).
pub const BATCH_CONTENT_TYPE: &str = "application/vnd.edge-ingest.batch";

/// What became of one upload.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The relay answered 2xx; `duplicate` when it had delivered it before,
    /// `conflict` when it knew the batch's key with other content;
    /// `series_table` when it says it holds the batch's series table
    /// (`"series_table": "<id>"`), so later batches may name it instead
    /// of carrying it ([`super::tables`]).
    Delivered {
        duplicate: bool,
        conflict: bool,
        series_table: Option<TableId>,
    },
    /// The batch named a series table the relay does not hold (409, reason
    /// `unknown_series_table`): [`super::tables::send`] sends it again with
    /// its table.
    UnknownTable(String),
    /// The relay will never accept this batch.
    Rejected(String),
    /// The relay does not read this batch's wire format version (400,
    /// reason `bad_version`): an older relay. [`super::compat::send`]
    /// turns it into an upload in an older format, or [`Outcome::Rejected`].
    TooNew(String),
    /// Try again later, after `after` if the relay said so.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
}

/// An HTTP(S) client for the relay's batch endpoint: hyper over rustls
/// with the ring provider, keeping up to `max_in_flight` connections open.
pub struct Uploader {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: Uri,
    url: String,
    /// `Bearer <token>`, marked sensitive so hyper never shows it.
    authorization: HeaderValue,
    gateway_id: HeaderValue,
    timeout: Duration,
}

impl Uploader {
    /// Build the client for `uplink`; the error names the key at fault
    /// (never the token's value).
    pub fn new(uplink: &UplinkConfig, gateway_id: &str) -> Result<Uploader, String> {
        let uri: Uri = uplink
            .url
            .parse()
            .map_err(|e| format!("uplink.url: {:?} is not a URL: {e}", uplink.url))?;
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", uplink.token.expose()))
            .map_err(|_| {
                "uplink token: not usable in an HTTP header (control characters?)".to_string()
            })?;
        authorization.set_sensitive(true);
        let gateway_id = HeaderValue::from_str(gateway_id)
            .map_err(|_| format!("gateway_id {gateway_id:?}: not usable in an HTTP header"))?;
        // An http:// uplink has no TLS settings; the connector still wants
        // a client config, which then trusts nothing and is never used.
        let tls = match &uplink.tls {
            Some(tls) => (*tls.client_config).clone(),
            None => ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth(),
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(uplink.timeout));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(uplink.max_in_flight)
            .build(connector);
        Ok(Uploader {
            client,
            uri,
            url: uplink.url.clone(),
            authorization,
            gateway_id,
            timeout: uplink.timeout,
        })
    }

    /// POST one encoded batch, within the upload timeout.
    pub async fn send(&self, body: Vec<u8>) -> Outcome {
        match tokio::time::timeout(self.timeout, self.exchange(body)).await {
            Ok(Ok((status, after, body))) => classify(status, &body, after),
            Ok(Err(reason)) => Outcome::Retry {
                reason,
                after: None,
            },
            Err(_) => Outcome::Retry {
                reason: format!(
                    "request to {} timed out after {} ms",
                    self.url,
                    self.timeout.as_millis()
                ),
                after: None,
            },
        }
    }

    /// The request and the whole answer: (status, Retry-After, body).
    async fn exchange(
        &self,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Option<Duration>, String), String> {
        let request = hyper::Request::post(self.uri.clone())
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, BATCH_CONTENT_TYPE)
            .header("x-edge-gateway", self.gateway_id.clone())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("request to {} could not be built: {e}", self.url))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("request to {} failed: {}", self.url, chain(&e)))?;
        let status = response.status();
        let after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("answer from {} broke off: {}", self.url, chain(&e)))?
            .to_bytes();
        Ok((status, after, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// What an answer means for the batch: a pure function of the status, the
/// body and the `Retry-After` header.
pub fn classify(status: StatusCode, body: &str, after: Option<Duration>) -> Outcome {
    if status.is_success() {
        let answer = serde_json::from_str::<serde_json::Value>(body).ok();
        let flag = |name: &str| {
            answer
                .as_ref()
                .and_then(|v| v.get(name)?.as_bool())
                .unwrap_or(false)
        };
        return Outcome::Delivered {
            duplicate: flag("duplicate"),
            conflict: flag("conflict"),
            series_table: answer
                .as_ref()
                .and_then(|v| parse_hex(v.get("series_table")?.as_str()?)),
        };
    }
    let reason = format!(
        "relay answered {status}: {}",
        body.chars().take(300).collect::<String>()
    );
    let reason_code = || {
        serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| Some(v.get("reason")?.as_str()?.to_string()))
    };
    match status {
        StatusCode::BAD_REQUEST if reason_code().as_deref() == Some("bad_version") => {
            Outcome::TooNew(reason)
        }
        StatusCode::CONFLICT if reason_code().as_deref() == Some("unknown_series_table") => {
            Outcome::UnknownTable(reason)
        }
        StatusCode::BAD_REQUEST
        | StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::UNPROCESSABLE_ENTITY => Outcome::Rejected(reason),
        _ => Outcome::Retry { reason, after },
    }
}

/// An error with its causes, so a TLS failure says why (for example
/// "invalid peer certificate: UnknownIssuer"), not just "error sending
/// request".
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        let s = Duration::from_secs;
        let cases: &[(u16, &str, Option<Duration>, Outcome)] = &[
            (
                200,
                "{\"accepted\":3}",
                None,
                Outcome::Delivered {
                    duplicate: false,
                    conflict: false,
                    series_table: None,
                },
            ),
            (
                200,
                "{\"duplicate\":true}",
                None,
                Outcome::Delivered {
                    duplicate: true,
                    conflict: false,
                    series_table: None,
                },
            ),
            (
                200,
                "{\"seq\":4,\"readings\":2,\"alarms\":0,\"conflict\":true}",
                None,
                Outcome::Delivered {
                    duplicate: false,
                    conflict: true,
                    series_table: None,
                },
            ),
            (
                200,
                "{\"conflict\":\"yes\"}",
                None,
                Outcome::Delivered {
                    duplicate: false,
                    conflict: false,
                    series_table: None,
                },
            ),
            (
                204,
                "",
                None,
                Outcome::Delivered {
                    duplicate: false,
                    conflict: false,
                    series_table: None,
                },
            ),
            (
                200,
                r#"{"seq":9,"readings":8,"alarms":0,"series_table":"000102030405060708090a0b0c0d0e0f"}"#,
                None,
                Outcome::Delivered {
                    duplicate: false,
                    conflict: false,
                    series_table: Some([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]),
                },
            ),
            (
                200,
                r#"{"series_table":"not hex at all, not 32 digits"}"#,
                None,
                Outcome::Delivered {
                    duplicate: false,
                    conflict: false,
                    series_table: None,
                },
            ),
            (
                409,
                r#"{"error":"unknown_series_table","reason":"unknown_series_table"}"#,
                None,
                Outcome::UnknownTable(
                    r#"relay answered 409 Conflict: {"error":"unknown_series_table","reason":"unknown_series_table"}"#
                        .into(),
                ),
            ),
            (
                409,
                "conflict",
                None,
                Outcome::Retry {
                    reason: "relay answered 409 Conflict: conflict".into(),
                    after: None,
                },
            ),
            (
                400,
                "bad",
                None,
                Outcome::Rejected("relay answered 400 Bad Request: bad".into()),
            ),
            (
                400,
                r#"{"error":"malformed","reason":"bad_version"}"#,
                None,
                Outcome::TooNew(
                    r#"relay answered 400 Bad Request: {"error":"malformed","reason":"bad_version"}"#
                        .into(),
                ),
            ),
            (
                400,
                r#"{"error":"malformed","reason":"malformed"}"#,
                None,
                Outcome::Rejected(
                    r#"relay answered 400 Bad Request: {"error":"malformed","reason":"malformed"}"#
                        .into(),
                ),
            ),
            (
                413,
                "",
                None,
                Outcome::Rejected("relay answered 413 Payload Too Large: ".into()),
            ),
            (
                422,
                "x",
                None,
                Outcome::Rejected("relay answered 422 Unprocessable Entity: x".into()),
            ),
            (
                503,
                "busy",
                Some(s(7)),
                Outcome::Retry {
                    reason: "relay answered 503 Service Unavailable: busy".into(),
                    after: Some(s(7)),
                },
            ),
            (
                401,
                "",
                None,
                Outcome::Retry {
                    reason: "relay answered 401 Unauthorized: ".into(),
                    after: None,
                },
            ),
            (
                429,
                "",
                Some(s(1)),
                Outcome::Retry {
                    reason: "relay answered 429 Too Many Requests: ".into(),
                    after: Some(s(1)),
                },
            ),
        ];
        for (status, body, after, expected) in cases {
            let got = classify(StatusCode::from_u16(*status).unwrap(), body, *after);
            assert_eq!(&got, expected, "status {status} body {body:?}");
        }
    }
}
