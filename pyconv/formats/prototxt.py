"""A reader for protobuf's text format (what Caffe's .prototxt files are), without protobuf.

:func:`parse` turns the text into a tree of :class:`Message` s whose fields keep their line and
column, so that whoever interprets the tree can name the line of every mistake. Syntax errors
raise :class:`TextFormatError` naming the line and column. The grammar is protobuf's:
``name: value``, ``name { ... }`` (or ``name: { ... }``, ``<...>``), ``name: [v1, v2]`` lists,
``#`` comments, optional ``,`` / ``;`` separators, strings in single or double quotes (adjacent
ones joined, C escapes), numbers (decimal, hex, floats with exponents, ``inf``/``nan``) and
identifiers (enum values, true/false).
"""
import re

__all__ = ["TextFormatError", "Scalar", "Field", "Message", "parse"]


class TextFormatError(ValueError):
    """A syntax error; ``line`` and ``column`` are 1-based."""

    def __init__(self, message, line, column):
        super().__init__(message)
        self.line, self.column = line, column


class Scalar:
    """One value: ``kind`` is ``"string"``, ``"number"`` or ``"ident"``; ``text`` the decoded
    string, the number as written, or the identifier."""

    __slots__ = ("kind", "text", "line", "column")

    def __init__(self, kind, text, line, column):
        self.kind, self.text, self.line, self.column = kind, text, line, column

    def __repr__(self):
        return f"{self.text!r}" if self.kind == "string" else self.text


class Field:
    __slots__ = ("name", "value", "line", "column")

    def __init__(self, name, value, line, column):
        self.name, self.value, self.line, self.column = name, value, line, column


class Message:
    """The fields of one message, in file order (a repeated field appears once per value)."""

    def __init__(self, line=1, column=1):
        self.fields, self.line, self.column = [], line, column

    def all(self, name):
        return [f for f in self.fields if f.name == name]

    def names(self):
        seen = []
        for f in self.fields:
            if f.name not in seen:
                seen.append(f.name)
        return seen


_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\f\v]+|\#[^\n]*)
  | (?P<newline>\n)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>-?(?:0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)[fF]?(?![A-Za-z0-9_]))
  | (?P<ident>-?[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[{}<>:\[\],;])
  | (?P<open_string>["'])
""", re.VERBOSE)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b", "f": "\f",
            "v": "\v", "?": "?"}


def _unescape(body, line, column):
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif e in "xX":
            m = re.match(r"[0-9a-fA-F]{1,2}", body[i + 2:])
            if not m:
                raise TextFormatError("bad \\x escape in a string", line, column)
            out.append(chr(int(m.group(), 16)))
            i += 2 + len(m.group())
        elif e in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i + 1:])
            out.append(chr(int(m.group(), 8)))
            i += 1 + len(m.group())
        else:
            raise TextFormatError(f"unknown escape \\{e} in a string", line, column)
    return "".join(out)


def _tokens(text):
    """(kind, text, line, column) per token, then ("eof", "", line, column)."""
    line, start = 1, 0
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        column = pos - start + 1
        if m is None:
            raise TextFormatError(f"unexpected character {text[pos]!r}", line, column)
        kind = m.lastgroup
        if kind == "newline":
            line, start = line + 1, m.end()
        elif kind == "open_string":
            raise TextFormatError("a string that does not end on its line (missing closing quote)", line, column)
        elif kind != "space":
            yield kind, m.group(), line, column
        pos = m.end()
    yield "eof", "", line, pos - start + 1


class _Parser:
    def __init__(self, text):
        self.tokens = list(_tokens(text))
        self.i = 0

    def peek(self):
        return self.tokens[self.i]

    def take(self):
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def fail(self, what, tok=None):
        kind, text, line, column = tok or self.peek()
        got = "the end of the file" if kind == "eof" else repr(text)
        raise TextFormatError(f"expected {what}, got {got}", line, column)

    def message(self, close, line=1, column=1):
        msg = Message(line, column)
        while True:
            kind, text, fline, fcol = self.peek()
            if kind == "eof" and close is None:
                return msg
            if kind == "punct" and text == close:
                self.take()
                return msg
            if kind == "eof":
                raise TextFormatError(f"the message opened at line {line} is not closed (missing '{close}')",
                                      fline, fcol)
            if kind != "ident" or text.startswith("-"):
                self.fail("a field name" + (f" or '{close}'" if close else ""))
            self.take()
            self.field(msg, text, fline, fcol)
            kind, text, *_ = self.peek()
            if kind == "punct" and text in ",;":
                self.take()

    def field(self, msg, name, line, column):
        kind, text, tline, tcol = self.peek()
        colon = kind == "punct" and text == ":"
        if colon:
            self.take()
            kind, text, tline, tcol = self.peek()
        if kind == "punct" and text in "{<":
            self.take()
            msg.fields.append(Field(name, self.message("}" if text == "{" else ">", tline, tcol), line, column))
            return
        if not colon:
            self.fail(f"':' or '{{' after the field name {name!r}")
        if kind == "punct" and text == "[":
            self.take()
            if self.peek()[:2] == ("punct", "]"):
                self.take()
                return
            while True:
                kind, text, tline, tcol = self.peek()
                if kind == "punct" and text in "{<":
                    self.take()
                    value = self.message("}" if text == "{" else ">", tline, tcol)
                else:
                    value = self.scalar(name)
                msg.fields.append(Field(name, value, line, column))
                kind, text, *_ = self.take()
                if kind == "punct" and text == "]":
                    return
                if not (kind == "punct" and text == ","):
                    self.fail(f"',' or ']' in the list of {name!r}", self.tokens[self.i - 1])
        msg.fields.append(Field(name, self.scalar(name), line, column))

    def scalar(self, name):
        kind, text, line, column = self.take()
        if kind == "string":
            parts = [_unescape(text[1:-1], line, column)]
            while self.peek()[0] == "string":  # "a" "b" is "ab"
                _, more, l2, c2 = self.take()
                parts.append(_unescape(more[1:-1], l2, c2))
            return Scalar("string", "".join(parts), line, column)
        if kind in ("number", "ident"):
            return Scalar(kind, text, line, column)
        self.fail(f"a value for {name!r}", (kind, text, line, column))


def parse(text):
    """The top-level :class:`Message` of ``text``; :class:`TextFormatError` on a syntax error."""
    return _Parser(text).message(None)
