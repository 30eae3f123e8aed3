//! Parser for cloud-hypervisor style option strings: `key=value,key=value`.
//! A value may be double-quoted to contain commas: `path="a,b.img",readonly=on`.

use std::collections::BTreeMap;

use super::ConfigError;

/// The parsed pairs of one option string, consumed key by key so leftovers can be reported.
#[derive(Debug)]
pub struct KeyValues {
    option: &'static str,
    pairs: BTreeMap<String, String>,
}

impl KeyValues {
    /// Splits `input` (the value of `--<option>`) into pairs.
    pub fn parse(option: &'static str, input: &str) -> Result<Self, ConfigError> {
        let mut pairs = BTreeMap::new();
        for item in split_unquoted_commas(option, input)? {
            if item.is_empty() {
                continue;
            }
            let Some((key, value)) = item.split_once('=') else {
                return Err(ConfigError::Syntax {
                    option,
                    input: input.to_owned(),
                    why: format!("'{item}' is not of the form key=value"),
                });
            };
            let value = unquote(value);
            if pairs.insert(key.to_owned(), value).is_some() {
                return Err(ConfigError::Syntax {
                    option,
                    input: input.to_owned(),
                    why: format!("'{key}' is given twice"),
                });
            }
        }
        Ok(KeyValues { option, pairs })
    }

    pub fn take(&mut self, key: &str) -> Option<String> {
        self.pairs.remove(key)
    }

    /// Takes a boolean: on/off, true/false, yes/no.
    pub fn take_bool(&mut self, key: &str) -> Result<Option<bool>, ConfigError> {
        let Some(v) = self.take(key) else {
            return Ok(None);
        };
        match v.as_str() {
            "on" | "true" | "yes" => Ok(Some(true)),
            "off" | "false" | "no" => Ok(Some(false)),
            _ => Err(ConfigError::Syntax {
                option: self.option,
                input: format!("{key}={v}"),
                why: "expected on or off".to_owned(),
            }),
        }
    }

    /// Fails on any key nobody took.
    pub fn finish(self, known: &[&str]) -> Result<(), ConfigError> {
        if let Some(key) = self.pairs.keys().next() {
            return Err(ConfigError::Syntax {
                option: self.option,
                input: key.clone(),
                why: format!("unknown key; known keys: {}", known.join(", ")),
            });
        }
        Ok(())
    }
}

fn split_unquoted_commas<'a>(
    option: &'static str,
    input: &'a str,
) -> Result<Vec<&'a str>, ConfigError> {
    let mut items = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in input.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                items.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return Err(ConfigError::Syntax {
            option,
            input: input.to_owned(),
            why: "unterminated double quote".to_owned(),
        });
    }
    items.push(&input[start..]);
    Ok(items)
}

fn unquote(value: &str) -> String {
    value.replace('"', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_and_quotes() {
        let mut kv = KeyValues::parse("disk", r#"path="a,b.img",readonly=on,serial=x"#).unwrap();
        assert_eq!(kv.take("path").as_deref(), Some("a,b.img"));
        assert_eq!(kv.take_bool("readonly").unwrap(), Some(true));
        assert_eq!(kv.take("serial").as_deref(), Some("x"));
        kv.finish(&[]).unwrap();
    }

    #[test]
    fn rejects_malformed_input() {
        assert!(KeyValues::parse("disk", "path").is_err());
        assert!(KeyValues::parse("disk", "path=a,path=b").is_err());
        assert!(KeyValues::parse("disk", "path=\"a").is_err());
        let mut kv = KeyValues::parse("disk", "readonly=maybe").unwrap();
        assert!(kv.take_bool("readonly").is_err());
        let kv = KeyValues::parse("disk", "colour=red").unwrap();
        let err = kv.finish(&["path"]).unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
    }
}
