//! The one path a re-baselining request takes, whether it came over MQTT
//! ([`crate::publish::LocalPublisher`], topic `<root>/rebaseline`) or from
//! the status page (`POST /api/spc/rebaseline`): the caller has checked
//! the credentials (`[status.auth]`, the same for both), then hands the
//! request to the pipeline task, which owns the detector. There it is
//! applied ([`crate::detect::Detector::rebaseline`]), its events
//! (`rebaselined`, and a clear for a raised test) are committed to the
//! spool's priority lane like every alarm event and published locally,
//! the SPC state is saved, and the answer comes back here.
//!
//! Guarantees: requests are applied one at a time, between two readings;
//! a refused request changes nothing and is counted
//! (`spc_rebaselines_refused`) and logged; an applied one is counted
//! (`spc_rebaselines`) and logged with who asked and how. A request that
//! arrives after the pipeline stopped, or whose caller goes away, is
//! answered [`RebaselineFailure::Stopped`] or not at all; it never blocks
//! the pipeline (the answer is a oneshot the pipeline does not wait on).

use tokio::sync::{mpsc, oneshot};

use crate::detect::{RebaselineError, RebaselineRequest};

/// Where a request came from, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Mqtt,
    StatusPage,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Mqtt => "mqtt",
            Via::StatusPage => "status_page",
        }
    }
}

/// What an applied request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Every series whose baselines were dropped, sorted.
    pub series: Vec<String>,
    /// Events committed now (those of series not seen since the start wait
    /// for their first reading).
    pub events: usize,
}

/// Why a request did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RebaselineFailure {
    #[error(transparent)]
    Refused(#[from] RebaselineError),
    #[error("the agent is stopping; nothing was re-baselined")]
    Stopped,
}

/// One request on its way to the pipeline.
#[derive(Debug)]
pub struct Command {
    pub request: RebaselineRequest,
    /// Who asked: the basic-auth user, or what the request says.
    pub by: String,
    pub via: Via,
    pub reply: oneshot::Sender<Result<Outcome, RebaselineError>>,
}

/// The sending side, for the MQTT publisher and the status page.
#[derive(Debug, Clone)]
pub struct RebaselinePath {
    tx: mpsc::Sender<Command>,
}

impl RebaselinePath {
    /// A path and the receiver the pipeline takes commands from; a few
    /// requests queue, more wait for room.
    pub fn channel() -> (RebaselinePath, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel(8);
        (RebaselinePath { tx }, rx)
    }

    /// Ask the pipeline to apply `request` and wait for its answer.
    pub async fn rebaseline(
        &self,
        request: RebaselineRequest,
        by: String,
        via: Via,
    ) -> Result<Outcome, RebaselineFailure> {
        let (reply, answer) = oneshot::channel();
        let command = Command {
            request,
            by,
            via,
            reply,
        };
        self.tx
            .send(command)
            .await
            .map_err(|_| RebaselineFailure::Stopped)?;
        match answer.await {
            Ok(result) => result.map_err(Into::into),
            Err(_) => Err(RebaselineFailure::Stopped),
        }
    }
}

/// The body of a request, on MQTT and on the page: `{"rule": ..,
/// "series": .., "mode": .., "by": ..}`, only `rule` required; over MQTT
/// also `"authorization": "Bearer <token>"` (or `"Basic <base64>"`), as
/// the page's `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Body {
    pub rule: String,
    pub series: Option<String>,
    pub mode: Option<i64>,
    pub by: Option<String>,
    pub authorization: Option<String>,
}

impl Body {
    /// Parse a request body; the error says what is expected.
    pub fn parse(bytes: &[u8]) -> Result<Body, String> {
        serde_json::from_slice(bytes).map_err(|e| {
            format!("expected {{\"rule\": .., \"series\": .., \"mode\": .., \"by\": ..}} (only rule required): {e}")
        })
    }

    pub fn request(&self) -> RebaselineRequest {
        RebaselineRequest {
            rule: self.rule.clone(),
            series: self.series.clone(),
            mode: self.mode,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        let b = Body::parse(
            br#"{"rule": "pump.flow_spc", "series": "pump.flow", "mode": 3, "by": "qe"}"#,
        )
        .unwrap();
        assert_eq!(
            b.request(),
            RebaselineRequest {
                rule: "pump.flow_spc".into(),
                series: Some("pump.flow".into()),
                mode: Some(3),
            }
        );
        assert_eq!(b.by.as_deref(), Some("qe"));
        let b = Body::parse(br#"{"rule": "r", "authorization": "Bearer t"}"#).unwrap();
        assert_eq!((b.series, b.mode), (None, None));
        for bad in [
            &b"{}"[..],
            b"pump",
            br#"{"rule": "r", "sereis": "x"}"#,
            br#"{"rule": 1}"#,
        ] {
            let e = Body::parse(bad).unwrap_err();
            assert!(e.starts_with("expected {\"rule\""), "{e}");
        }
    }

    /// A stopped pipeline (receiver gone, or dropped before answering) is
    /// an answer, not a hang.
    #[tokio::test]
    async fn a_stopped_pipeline_answers_stopped() {
        let (path, rx) = RebaselinePath::channel();
        let req = || RebaselineRequest {
            rule: "r".into(),
            series: None,
            mode: None,
        };
        let (path2, mut rx2) = RebaselinePath::channel();
        let dropping = tokio::spawn(async move {
            let command = rx2.recv().await.unwrap();
            drop(command);
        });
        assert_eq!(
            path2.rebaseline(req(), "t".into(), Via::Mqtt).await,
            Err(RebaselineFailure::Stopped)
        );
        dropping.await.unwrap();
        drop(rx);
        assert_eq!(
            path.rebaseline(req(), "t".into(), Via::Mqtt).await,
            Err(RebaselineFailure::Stopped)
        );
    }
}
