//! Whether Python's `json.loads` accepts a string: RFC 8259 JSON plus `NaN`,
//! `Infinity` and `-Infinity`, whitespace `[ \t\n\r]`, no control characters inside
//! strings, lone surrogate escapes allowed, nothing after the value. serde_json differs
//! on exactly these points, so `detectable_format:json_format` uses this validator.

/// Deeper nesting than this is refused (Python raises `RecursionError` near 1000).
const MAX_DEPTH: usize = 900;

struct Parser<'a> {
    s: &'a [u8],
    p: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while matches!(self.s.get(self.p), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.p += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.p..].starts_with(lit.as_bytes()) {
            self.p += lit.len();
            true
        } else {
            false
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.p;
        while self.s.get(self.p).is_some_and(u8::is_ascii_digit) {
            self.p += 1;
        }
        self.p - start
    }

    fn number(&mut self) -> bool {
        self.eat("-");
        if self.eat("Infinity") {
            return true;
        }
        match self.s.get(self.p) {
            Some(b'0') => self.p += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return false,
        }
        // Python's NUMBER_RE: a fraction or exponent that does not complete is not
        // consumed, and what follows is then "extra data".
        let save = self.p;
        if self.eat(".") && self.digits() == 0 {
            self.p = save;
        }
        let save = self.p;
        if self.eat("e") || self.eat("E") {
            if !self.eat("+") {
                self.eat("-");
            }
            if self.digits() == 0 {
                self.p = save;
            }
        }
        true
    }

    fn string(&mut self) -> bool {
        // The opening quote is consumed by the caller.
        loop {
            match self.s.get(self.p) {
                None => return false,
                Some(b'"') => {
                    self.p += 1;
                    return true;
                }
                Some(b'\\') => {
                    self.p += 1;
                    match self.s.get(self.p) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.p += 1,
                        Some(b'u') => {
                            let hex = self.s.get(self.p + 1..self.p + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return false;
                            }
                            self.p += 5;
                        }
                        _ => return false,
                    }
                }
                Some(&c) if c < 0x20 => return false,
                Some(_) => self.p += 1,
            }
        }
    }

    fn value(&mut self, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        match self.s.get(self.p) {
            Some(b'{') => {
                self.p += 1;
                self.ws();
                if self.eat("}") {
                    return true;
                }
                loop {
                    if !self.eat("\"") || !self.string() {
                        return false;
                    }
                    self.ws();
                    if !self.eat(":") {
                        return false;
                    }
                    self.ws();
                    if !self.value(depth + 1) {
                        return false;
                    }
                    self.ws();
                    if self.eat("}") {
                        return true;
                    }
                    if !self.eat(",") {
                        return false;
                    }
                    self.ws();
                }
            }
            Some(b'[') => {
                self.p += 1;
                self.ws();
                if self.eat("]") {
                    return true;
                }
                loop {
                    if !self.value(depth + 1) {
                        return false;
                    }
                    self.ws();
                    if self.eat("]") {
                        return true;
                    }
                    if !self.eat(",") {
                        return false;
                    }
                    self.ws();
                }
            }
            Some(b'"') => {
                self.p += 1;
                self.string()
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => {
                self.eat("true")
                    || self.eat("false")
                    || self.eat("null")
                    || self.eat("NaN")
                    || self.eat("Infinity")
            }
            None => false,
        }
    }
}

/// `True` where Python's `json.loads(s)` returns without raising.
pub fn python_json_loads_ok(s: &str) -> bool {
    let mut p = Parser {
        s: s.as_bytes(),
        p: 0,
    };
    p.ws();
    if !p.value(0) {
        return false;
    }
    p.ws();
    p.p == p.s.len()
}

#[cfg(test)]
mod tests {
    use super::python_json_loads_ok as ok;

    #[test]
    fn accepts_what_python_accepts() {
        for s in [
            "{\"a\": [1, 2.5e-3, -0, true, null]}",
            "NaN",
            "-Infinity",
            " 42 ",
            "\"\\ud800\"",
        ] {
            assert!(ok(s), "{s}");
        }
        for s in [
            "{'a': 1}",
            "{\"a\": 1,}",
            "01",
            "1.",
            "\"tab\there\"",
            "{} {}",
            "",
            "\u{feff}{}",
        ] {
            assert!(!ok(s), "{s}");
        }
    }
}
