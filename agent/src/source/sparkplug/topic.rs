//! Sparkplug B topic names: `spBv1.0/<group>/<type>/<edge node>[/<device>]`,
//! and the host application's `spBv1.0/STATE/<host id>`.

/// The message type in a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NBirth,
    NDeath,
    NData,
    NCmd,
    DBirth,
    DDeath,
    DData,
    DCmd,
    /// A host application's online state (`spBv1.0/STATE/<host id>`).
    State,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "NBIRTH" => Kind::NBirth,
            "NDEATH" => Kind::NDeath,
            "NDATA" => Kind::NData,
            "NCMD" => Kind::NCmd,
            "DBIRTH" => Kind::DBirth,
            "DDEATH" => Kind::DDeath,
            "DDATA" => Kind::DData,
            "DCMD" => Kind::DCmd,
            _ => return None,
        })
    }

    /// Whether the type names a device (the topic has a fifth level).
    pub fn is_device(self) -> bool {
        matches!(self, Kind::DBirth | Kind::DDeath | Kind::DData | Kind::DCmd)
    }
}

/// A parsed Sparkplug topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic<'a> {
    pub kind: Kind,
    /// Group id; the host id for [`Kind::State`].
    pub group: &'a str,
    /// Edge node id; empty for [`Kind::State`].
    pub node: &'a str,
    pub device: Option<&'a str>,
}

/// Why a topic is not a Sparkplug B topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic {0:?} does not start with \"spBv1.0/\"")]
    Namespace(String),
    #[error("topic {0:?}: unknown Sparkplug message type {1:?}")]
    Type(String, String),
    #[error("topic {0:?}: a {1} topic has {2} levels after the namespace")]
    Levels(String, &'static str, &'static str),
}

/// Parse `topic`.
pub fn parse(topic: &str) -> Result<Topic<'_>, TopicError> {
    let rest = topic
        .strip_prefix("spBv1.0/")
        .ok_or_else(|| TopicError::Namespace(topic.to_string()))?;
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.first() == Some(&"STATE") {
        return match parts.as_slice() {
            [_, host] if !host.is_empty() => Ok(Topic {
                kind: Kind::State,
                group: host,
                node: "",
                device: None,
            }),
            _ => Err(TopicError::Levels(topic.to_string(), "STATE", "2")),
        };
    }
    let kind_name = parts.get(1).copied().unwrap_or("");
    let kind = Kind::parse(kind_name)
        .ok_or_else(|| TopicError::Type(topic.to_string(), kind_name.to_string()))?;
    let nonempty = |p: &[&str]| p.iter().all(|s| !s.is_empty());
    match (kind.is_device(), parts.as_slice()) {
        (false, [group, _, node]) if nonempty(&[group, node]) => Ok(Topic {
            kind,
            group,
            node,
            device: None,
        }),
        (true, [group, _, node, device]) if nonempty(&[group, node, device]) => Ok(Topic {
            kind,
            group,
            node,
            device: Some(device),
        }),
        (false, _) => Err(TopicError::Levels(topic.to_string(), "node", "3")),
        (true, _) => Err(TopicError::Levels(topic.to_string(), "device", "4")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    #[test]
    fn topics_table() {
        let ok: &[(&str, Kind, &str, &str, Option<&str>)] = &[
            ("spBv1.0/plant1/NBIRTH/gw-7", Kind::NBirth, "plant1", "gw-7", None),
            ("spBv1.0/plant1/NDATA/gw-7", Kind::NData, "plant1", "gw-7", None),
            ("spBv1.0/plant1/DDATA/gw-7/press-3", Kind::DData, "plant1", "gw-7", Some("press-3")),
            ("spBv1.0/plant1/DDEATH/gw-7/press-3", Kind::DDeath, "plant1", "gw-7", Some("press-3")),
            ("spBv1.0/STATE/scada-1", Kind::State, "scada-1", "", None),
        ];
        for (t, kind, group, node, device) in ok {
            let p = parse(t).unwrap();
            assert_eq!((p.kind, p.group, p.node, p.device), (*kind, *group, *node, *device), "{t}");
        }
        let bad: &[(&str, &str)] = &[
            ("spAv1.0/plant1/NDATA/gw", "does not start with"),
            ("spBv1.0/plant1/XDATA/gw", "unknown Sparkplug message type \"XDATA\""),
            ("spBv1.0/plant1/NDATA/gw/extra", "a node topic has 3 levels"),
            ("spBv1.0/plant1/DDATA/gw", "a device topic has 4 levels"),
            ("spBv1.0/plant1/DDATA/gw/", "a device topic has 4 levels"),
            ("spBv1.0/STATE", "a STATE topic has 2 levels"),
        ];
        for (t, want) in bad {
            let e = parse(t).unwrap_err().to_string();
            assert!(e.contains(want), "{t}: {e}");
        }
    }
}
