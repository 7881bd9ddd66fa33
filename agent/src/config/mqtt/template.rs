//! Series and tag templates (`{1}`, `{2}`… stand for topic levels) and the
//! MQTT topic filter rules they are checked against. Pure text handling.

/// Text with `{n}` placeholders for topic levels (1-based).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template {
    parts: Vec<TemplatePart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplatePart {
    Text(String),
    Level(usize),
}

impl Template {
    /// Parse `text`; `{` must open a placeholder `{n}` with n ≥ 1.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(TemplatePart::Text(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("{text:?}: '{{' without a closing '}}'"))?;
            let inner = &rest[open + 1..open + close];
            match inner.parse::<usize>() {
                Ok(n) if n >= 1 => parts.push(TemplatePart::Level(n)),
                _ => {
                    return Err(format!(
                        "{text:?}: {{{inner}}} is not a topic level (use {{1}}, {{2}}, …)"
                    ))
                }
            }
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// The text with each `{n}` replaced by the topic's n-th level.
    pub fn expand(&self, levels: &[&str]) -> Result<String, usize> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                TemplatePart::Text(t) => out.push_str(t),
                TemplatePart::Level(n) => out.push_str(levels.get(n - 1).ok_or(*n)?),
            }
        }
        Ok(out)
    }

    /// Whether some topic could expand the template to `name`: the text
    /// parts literally, each `{n}` any text without '/' (a topic level).
    pub fn could_expand_to(&self, name: &str) -> bool {
        fn rest_matches(parts: &[TemplatePart], name: &str) -> bool {
            match parts.split_first() {
                None => name.is_empty(),
                Some((TemplatePart::Text(t), more)) => name
                    .strip_prefix(t.as_str())
                    .is_some_and(|rest| rest_matches(more, rest)),
                Some((TemplatePart::Level(_), more)) => {
                    let level_end = name.find('/').unwrap_or(name.len());
                    (0..=level_end)
                        .filter(|&k| name.is_char_boundary(k))
                        .any(|k| rest_matches(more, &name[k..]))
                }
            }
        }
        rest_matches(&self.parts, name)
    }

    /// The highest level referred to, 0 when none.
    pub fn max_level(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                TemplatePart::Level(n) => *n,
                TemplatePart::Text(_) => 0,
            })
            .max()
            .unwrap_or(0)
    }

    /// The literal text, placeholders left out.
    pub(super) fn literal(&self) -> String {
        self.parts
            .iter()
            .filter_map(|p| match p {
                TemplatePart::Text(t) => Some(t.as_str()),
                TemplatePart::Level(_) => None,
            })
            .collect()
    }
}

/// Whether `filter` is a valid MQTT topic filter: `+` and `#` only as whole
/// levels and `#` only last.
pub fn check_filter(filter: &str) -> Result<(), &'static str> {
    if filter.is_empty() {
        return Err("must not be empty");
    }
    if filter.contains('\0') {
        return Err("must not contain NUL");
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err("'#' must be a whole level and the last one");
        }
        if level.contains('+') && *level != "+" {
            return Err("'+' must be a whole level");
        }
    }
    Ok(())
}
