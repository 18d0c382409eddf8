//! Request bodies of the business API: a JSON object read field by field, so that every refusal
//! names the field at fault (an unknown one, a missing one, one of the wrong type or out of
//! range). Runs on the event loop inside `route`: it parses and checks, it never blocks.

use serde_json::{Map, Value};

use super::error::ApiError;

/// The largest body a call takes.
pub const MAX_BODY: usize = 64 * 1024;

/// A field that may be absent, JSON `null`, or a value (a PATCH tells the three apart).
#[derive(Debug, Clone, PartialEq)]
pub enum Field<T> {
    Absent,
    Null,
    Value(T),
}

impl<T> Field<T> {
    /// The value, or None for absent and null.
    pub fn value(self) -> Option<T> {
        match self {
            Field::Value(v) => Some(v),
            _ => None,
        }
    }

    /// As an edit reads it: None (absent) leaves the field, Some(None) (null) clears it.
    pub fn patch(self) -> Option<Option<T>> {
        match self {
            Field::Absent => None,
            Field::Null => Some(None),
            Field::Value(v) => Some(Some(v)),
        }
    }
}

/// A JSON object whose keys were checked against the ones the call takes.
#[derive(Debug)]
pub struct Obj {
    map: Map<String, Value>,
    /// `address.` for a nested object: field names in errors are full paths.
    prefix: String,
}

/// Parses `body` as a JSON object taking only the keys `allowed`.
pub fn object(body: &[u8], allowed: &[&str]) -> Result<Obj, ApiError> {
    if body.len() > MAX_BODY {
        return Err(ApiError::too_large(MAX_BODY));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_json(format!("the body is not JSON: {e}")))?;
    Obj::from_value(v, allowed, String::new())
        .map_err(|e| e.unwrap_or_else(|| ApiError::bad_json("the body is not a JSON object")))
}

impl Obj {
    /// `v` as an object of `allowed` keys; Err(None) when it is not an object.
    fn from_value(v: Value, allowed: &[&str], prefix: String) -> Result<Obj, Option<ApiError>> {
        let Value::Object(map) = v else {
            return Err(None);
        };
        if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(Some(ApiError::invalid(
                format!("{prefix}{k}"),
                format!("unknown field \"{prefix}{k}\""),
            )));
        }
        Ok(Obj { map, prefix })
    }

    fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The raw field.
    fn take(&mut self, key: &str) -> Field<Value> {
        match self.map.remove(key) {
            None => Field::Absent,
            Some(Value::Null) => Field::Null,
            Some(v) => Field::Value(v),
        }
    }

    fn missing(&self, key: &str) -> ApiError {
        ApiError::invalid(self.name(key), format!("{} is required", self.name(key)))
    }

    fn wrong(&self, key: &str, what: &str) -> ApiError {
        ApiError::invalid(self.name(key), format!("{} must be {what}", self.name(key)))
    }

    /// A string field of `min..=max` characters (absent, null or a string).
    pub fn string(&mut self, key: &str, min: usize, max: usize) -> Result<Field<String>, ApiError> {
        match self.take(key) {
            Field::Value(Value::String(s)) => {
                let n = s.chars().count();
                if n < min || n > max {
                    return Err(self.wrong(key, &format!("{min} to {max} characters")));
                }
                Ok(Field::Value(s))
            }
            Field::Value(_) => Err(self.wrong(key, "a string")),
            Field::Null => Ok(Field::Null),
            Field::Absent => Ok(Field::Absent),
        }
    }

    /// An integer field within `min..=max`.
    pub fn int(&mut self, key: &str, min: i64, max: i64) -> Result<Field<i64>, ApiError> {
        match self.take(key) {
            Field::Value(v) => match v.as_i64() {
                Some(n) if (min..=max).contains(&n) => Ok(Field::Value(n)),
                _ => Err(self.wrong(key, &format!("an integer from {min} to {max}"))),
            },
            Field::Null => Ok(Field::Null),
            Field::Absent => Ok(Field::Absent),
        }
    }

    /// An integer field within `min..=max`, for an `int4` column.
    pub fn int32(&mut self, key: &str, min: i32, max: i32) -> Result<Field<i32>, ApiError> {
        Ok(match self.int(key, min.into(), max.into())? {
            Field::Value(n) => Field::Value(i32::try_from(n).expect("within min..=max")),
            Field::Null => Field::Null,
            Field::Absent => Field::Absent,
        })
    }

    /// A number field within `min..=max`.
    pub fn number(&mut self, key: &str, min: f64, max: f64) -> Result<Field<f64>, ApiError> {
        match self.take(key) {
            Field::Value(v) => match v.as_f64() {
                Some(n) if (min..=max).contains(&n) => Ok(Field::Value(n)),
                _ => Err(self.wrong(key, &format!("a number from {min} to {max}"))),
            },
            Field::Null => Ok(Field::Null),
            Field::Absent => Ok(Field::Absent),
        }
    }

    /// A boolean field.
    pub fn boolean(&mut self, key: &str) -> Result<Field<bool>, ApiError> {
        match self.take(key) {
            Field::Value(Value::Bool(b)) => Ok(Field::Value(b)),
            Field::Value(_) => Err(self.wrong(key, "true or false")),
            Field::Null => Ok(Field::Null),
            Field::Absent => Ok(Field::Absent),
        }
    }

    /// An array of positive integer ids, `min..=max` of them, none twice.
    pub fn ids(&mut self, key: &str, min: usize, max: usize) -> Result<Field<Vec<i64>>, ApiError> {
        let what = format!("an array of {min} to {max} distinct positive ids");
        match self.take(key) {
            Field::Value(Value::Array(a)) => {
                let ids: Option<Vec<i64>> =
                    a.iter().map(|v| v.as_i64().filter(|n| *n > 0)).collect();
                let Some(ids) = ids.filter(|i| (min..=max).contains(&i.len())) else {
                    return Err(self.wrong(key, &what));
                };
                let mut sorted = ids.clone();
                sorted.sort_unstable();
                sorted.dedup();
                if sorted.len() != ids.len() {
                    return Err(self.wrong(key, &what));
                }
                Ok(Field::Value(ids))
            }
            Field::Value(_) => Err(self.wrong(key, &what)),
            Field::Null => Ok(Field::Null),
            Field::Absent => Ok(Field::Absent),
        }
    }

    /// A nested object of `allowed` keys.
    pub fn object(&mut self, key: &str, allowed: &[&str]) -> Result<Field<Obj>, ApiError> {
        let prefix = format!("{}.", self.name(key));
        match self.take(key) {
            Field::Value(v) => Obj::from_value(v, allowed, prefix)
                .map(Field::Value)
                .map_err(|e| e.unwrap_or_else(|| self.wrong(key, "an object"))),
            Field::Null => Ok(Field::Null),
            Field::Absent => Ok(Field::Absent),
        }
    }

    /// `field` when present and not null; else the error that `key` is required.
    pub fn required<T>(&self, key: &str, field: Field<T>) -> Result<T, ApiError> {
        match field {
            Field::Value(v) => Ok(v),
            Field::Null => Err(self.wrong(key, "given (not null)")),
            Field::Absent => Err(self.missing(key)),
        }
    }

    /// `field` unless null (absent stays absent): for fields that may be left out, never null.
    pub fn not_null<T>(&self, key: &str, field: Field<T>) -> Result<Option<T>, ApiError> {
        match field {
            Field::Value(v) => Ok(Some(v)),
            Field::Null => Err(self.wrong(key, "given (not null)")),
            Field::Absent => Ok(None),
        }
    }
}

/// A string field checked by `check`, which says why a value is refused.
pub fn checked<T>(
    obj: &mut Obj,
    key: &str,
    max: usize,
    check: impl Fn(&str) -> Result<T, String>,
) -> Result<Field<T>, ApiError> {
    Ok(match obj.string(key, 0, max)? {
        Field::Value(s) => {
            Field::Value(check(&s).map_err(|why| ApiError::invalid(obj.name(key), why))?)
        }
        Field::Null => Field::Null,
        Field::Absent => Field::Absent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(r: Result<impl std::fmt::Debug, ApiError>) -> String {
        r.unwrap_err().field.unwrap_or_default()
    }

    #[test]
    fn unknown_fields_are_named_even_nested() {
        assert_eq!(
            field(object(br#"{"name":"a","nmae":1}"#, &["name"])),
            "nmae"
        );
        let mut o = object(br#"{"address":{"cty":"x"}}"#, &["address"]).unwrap();
        assert_eq!(field(o.object("address", &["city"])), "address.cty");
    }

    #[test]
    fn not_an_object_is_bad_json_and_too_big_is_413() {
        assert_eq!(object(b"[1]", &[]).unwrap_err().code, "bad_json");
        assert_eq!(object(b"{", &[]).unwrap_err().code, "bad_json");
        let big = vec![b' '; MAX_BODY + 1];
        assert_eq!(object(&big, &[]).unwrap_err().status, 413);
    }

    #[test]
    fn types_ranges_and_presence_name_the_field() {
        let mut o = object(
            br#"{"n":"x","c":0,"lat":91,"s":null}"#,
            &["n", "c", "lat", "s"],
        )
        .unwrap();
        assert_eq!(field(o.int("n", 1, 5)), "n");
        assert_eq!(field(o.int("c", 1, 5)), "c");
        assert_eq!(field(o.number("lat", -90.0, 90.0)), "lat");
        let s = o.string("s", 1, 5).unwrap();
        assert_eq!(field(o.required("s", s)), "s");
        assert_eq!(field(o.required("gone", Field::<i64>::Absent)), "gone");
        assert!(o.map.is_empty(), "every field was taken");
    }

    #[test]
    fn int4_fields_and_edits() {
        let mut o = object(
            br#"{"a":2147483647,"b":2147483648,"c":null}"#,
            &["a", "b", "c"],
        )
        .unwrap();
        assert_eq!(o.int32("a", 1, i32::MAX).unwrap(), Field::Value(i32::MAX));
        assert_eq!(field(o.int32("b", 1, i32::MAX)), "b");
        assert_eq!(o.int32("c", 1, 5).unwrap().patch(), Some(None));
        assert_eq!(o.int32("gone", 1, 5).unwrap().patch(), None);
        assert_eq!(Field::Value(3).patch(), Some(Some(3)));
    }

    #[test]
    fn ids_are_positive_distinct_and_counted() {
        let mut o = object(
            br#"{"a":[1,2],"b":[1,1],"c":[],"d":[0],"e":"x"}"#,
            &["a", "b", "c", "d", "e"],
        )
        .unwrap();
        assert_eq!(o.ids("a", 1, 3).unwrap(), Field::Value(vec![1, 2]));
        for k in ["b", "c", "d", "e"] {
            assert_eq!(field(o.ids(k, 1, 3)), k);
        }
    }
}
