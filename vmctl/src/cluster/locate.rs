//! Finds the line and column of a value in a YAML text by its path (`nodes[2].name`), for
//! errors found after parsing (duplicate names, a missing file), which serde cannot place.
//!
//! It deserializes the text once more with a seed that walks the path and fails on purpose at
//! the value: the YAML deserializer stamps that failure with the value's own position.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Key(&'static str),
    Index(usize),
}

/// A path into the document: `nodes[2].name`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct YamlPath(pub Vec<Step>);

impl YamlPath {
    pub fn key(k: &'static str) -> Self {
        YamlPath(vec![Step::Key(k)])
    }
    pub fn then(mut self, k: &'static str) -> Self {
        self.0.push(Step::Key(k));
        self
    }
    pub fn at(mut self, i: usize) -> Self {
        self.0.push(Step::Index(i));
        self
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, step) in self.0.iter().enumerate() {
            match step {
                Step::Key(k) if n == 0 => write!(f, "{k}")?,
                Step::Key(k) => write!(f, ".{k}")?,
                Step::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// The 1-based line and column where the value at `path` starts, if the path exists; else the
/// position of the deepest part of it that exists.
pub fn locate(text: &str, path: &YamlPath) -> Option<(usize, usize)> {
    let de = yaml_serde::Deserializer::from_str(text);
    let err = match (Walk { rest: &path.0 }).deserialize(de) {
        Ok(()) => return None,
        Err(e) => e,
    };
    err.location().map(|l| (l.line(), l.column()))
}

const HERE: &str = "vmctl-locate-here";

struct Walk<'p> {
    rest: &'p [Step],
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("anything")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Step::Key(want), rest)) = self.rest.split_first() else {
            return Err(de::Error::custom(HERE));
        };
        while let Some(key) = map.next_key::<String>()? {
            if key == *want {
                return map.next_value_seed(Walk { rest });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Err(de::Error::custom(HERE))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Step::Index(want), rest)) = self.rest.split_first() else {
            return Err(de::Error::custom(HERE));
        };
        for _ in 0..*want {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Err(de::Error::custom(HERE));
            }
        }
        match seq.next_element_seed(Walk { rest })? {
            Some(()) => Ok(()),
            None => Err(de::Error::custom(HERE)),
        }
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(HERE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name: x\nnodes:\n  - name: a\n    count: 2\n  - { name: b, cpus: 1 }\n";

    #[test]
    fn finds_block_and_flow_values() {
        let p = YamlPath::key("nodes").at(0).then("count");
        assert_eq!(locate(DOC, &p), Some((4, 12)));
        let p = YamlPath::key("nodes").at(1).then("name");
        assert_eq!(locate(DOC, &p), Some((5, 13)));
        assert_eq!(locate(DOC, &YamlPath::key("name")), Some((1, 7)));
        assert_eq!(p.to_string(), "nodes[1].name");
    }
}
