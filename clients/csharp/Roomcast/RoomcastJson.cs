// roomcast C# client: a small JSON reader and writer.
//
// Why its own: the client must drop into Unity with no NuGet packages, and Unity's JsonUtility
// only maps JSON onto fixed serializable classes; it cannot read the protocol's open-ended
// values (a msg's data may be any JSON). This file is a plain RFC 8259 reader and a compact
// writer, nothing more.

using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace Roomcast
{
    /// <summary>The kind of a <see cref="JsonValue"/>.</summary>
    public enum JsonKind
    {
        /// <summary>Not there: what indexing a missing key or a non-container gives.</summary>
        Undefined,
        Null,
        Bool,
        Number,
        String,
        Array,
        Object,
    }

    /// <summary>Malformed JSON (with the character position), or a value JSON cannot hold.</summary>
    public sealed class JsonException : Exception
    {
        /// <summary>Index in the text where parsing failed; -1 for writer errors.</summary>
        public int Position { get; }

        public JsonException(string message, int position)
            : base(position >= 0 ? message + " at character " + position : message)
        {
            Position = position;
        }
    }

    /// <summary>
    /// One JSON value. Reading never throws on a shape you did not expect: indexing a missing
    /// key, a non-object or an index out of range gives <see cref="Undefined"/>, and the
    /// <c>As*</c> accessors take a fallback, so data from the network cannot crash a reader
    /// that navigates it (<c>ev.Data["pos"]["x"].AsDouble()</c>).
    /// </summary>
    /// <remarks>
    /// Numbers keep the text they were parsed from, so a value read and written again is the
    /// same JSON (big integers and float spellings survive, as the server forwards them).
    /// Objects keep their key order. Values are mutable through <see cref="Set"/> and
    /// <see cref="Add"/>; the shared constants (<see cref="Null"/>, <see cref="True"/>, ...)
    /// are scalars and cannot be changed.
    /// </remarks>
    public sealed class JsonValue
    {
        /// <summary>Deepest nesting the reader accepts. The server refuses deeper data (serde_json
        /// stops at 128), and a limit keeps a hostile frame from overflowing the stack, which
        /// .NET cannot catch.</summary>
        public const int MaxDepth = 256;

        public static readonly JsonValue Undefined = new JsonValue(JsonKind.Undefined);
        public static readonly JsonValue Null = new JsonValue(JsonKind.Null);
        public static readonly JsonValue True = new JsonValue(JsonKind.Bool) { boolean = true };
        public static readonly JsonValue False = new JsonValue(JsonKind.Bool);

        readonly JsonKind kind;
        bool boolean;
        double number;
        // The string's value, or a number's literal text.
        string text;
        List<JsonValue> items;
        List<string> keys;
        Dictionary<string, JsonValue> members;

        JsonValue(JsonKind kind)
        {
            this.kind = kind;
        }

        public JsonKind Kind { get { return kind; } }
        public bool IsUndefined { get { return kind == JsonKind.Undefined; } }
        public bool IsNull { get { return kind == JsonKind.Null; } }
        public bool IsBool { get { return kind == JsonKind.Bool; } }
        public bool IsNumber { get { return kind == JsonKind.Number; } }
        public bool IsString { get { return kind == JsonKind.String; } }
        public bool IsArray { get { return kind == JsonKind.Array; } }
        public bool IsObject { get { return kind == JsonKind.Object; } }

        // --- building ---------------------------------------------------------------------

        /// <summary>A new, empty object; fill it with <see cref="Set"/>.</summary>
        public static JsonValue NewObject()
        {
            return new JsonValue(JsonKind.Object)
            {
                keys = new List<string>(),
                members = new Dictionary<string, JsonValue>(StringComparer.Ordinal),
            };
        }

        /// <summary>A new array holding <paramref name="values"/>.</summary>
        public static JsonValue NewArray(params JsonValue[] values)
        {
            var array = new JsonValue(JsonKind.Array) { items = new List<JsonValue>() };
            foreach (var value in values)
            {
                array.Add(value);
            }
            return array;
        }

        /// <summary>A string (null gives <see cref="Null"/>).</summary>
        public static JsonValue FromString(string value)
        {
            return value == null ? Null : new JsonValue(JsonKind.String) { text = value };
        }

        /// <summary>A number. NaN and infinities throw: JSON cannot hold them, and the server
        /// would refuse the message.</summary>
        public static JsonValue FromDouble(double value)
        {
            if (double.IsNaN(value) || double.IsInfinity(value))
            {
                throw new JsonException("JSON has no NaN or infinity (got " + value + ")", -1);
            }
            return new JsonValue(JsonKind.Number) { number = value, text = FormatDouble(value) };
        }

        /// <summary>A number written with a float's shortest digits (1.6f is written 1.6, not
        /// 1.60000002384186): Unity hands positions over as floats.</summary>
        public static JsonValue FromFloat(float value)
        {
            if (float.IsNaN(value) || float.IsInfinity(value))
            {
                throw new JsonException("JSON has no NaN or infinity (got " + value + ")", -1);
            }
            // The value is the one its text reads as (1.6, not 1.600000023841858), so a value
            // built here equals the same value read back from the wire.
            string literal = value.ToString("R", CultureInfo.InvariantCulture);
            double read = double.Parse(literal, NumberStyles.Float, CultureInfo.InvariantCulture);
            return new JsonValue(JsonKind.Number) { number = read, text = literal };
        }

        public static JsonValue FromLong(long value)
        {
            return new JsonValue(JsonKind.Number)
            {
                number = value,
                text = value.ToString(CultureInfo.InvariantCulture),
            };
        }

        public static JsonValue FromBool(bool value)
        {
            return value ? True : False;
        }

        public static implicit operator JsonValue(string value) { return FromString(value); }
        public static implicit operator JsonValue(double value) { return FromDouble(value); }
        public static implicit operator JsonValue(float value) { return FromFloat(value); }
        public static implicit operator JsonValue(long value) { return FromLong(value); }
        public static implicit operator JsonValue(int value) { return FromLong(value); }
        public static implicit operator JsonValue(bool value) { return FromBool(value); }

        /// <summary>Sets a key of an object (replacing its value if present, keeping its place);
        /// returns this object, so calls chain. A null value is stored as JSON null.</summary>
        public JsonValue Set(string key, JsonValue value)
        {
            if (kind != JsonKind.Object)
            {
                throw new InvalidOperationException("Set needs an object, not " + kind);
            }
            if (key == null)
            {
                throw new ArgumentNullException("key");
            }
            if (!members.ContainsKey(key))
            {
                keys.Add(key);
            }
            members[key] = value ?? Null;
            return this;
        }

        /// <summary>Appends to an array; returns this array. A null value is stored as JSON null.</summary>
        public JsonValue Add(JsonValue value)
        {
            if (kind != JsonKind.Array)
            {
                throw new InvalidOperationException("Add needs an array, not " + kind);
            }
            items.Add(value ?? Null);
            return this;
        }

        // --- reading ----------------------------------------------------------------------

        /// <summary>The member named <paramref name="key"/>; <see cref="Undefined"/> when this is
        /// not an object or has no such key.</summary>
        public JsonValue this[string key]
        {
            get
            {
                JsonValue value;
                if (kind == JsonKind.Object && key != null && members.TryGetValue(key, out value))
                {
                    return value;
                }
                return Undefined;
            }
        }

        /// <summary>The array item at <paramref name="index"/>; <see cref="Undefined"/> when this
        /// is not an array or the index is out of range.</summary>
        public JsonValue this[int index]
        {
            get
            {
                if (kind == JsonKind.Array && index >= 0 && index < items.Count)
                {
                    return items[index];
                }
                return Undefined;
            }
        }

        /// <summary>Items of an array or members of an object; 0 for anything else.</summary>
        public int Count
        {
            get
            {
                if (kind == JsonKind.Array)
                {
                    return items.Count;
                }
                return kind == JsonKind.Object ? keys.Count : 0;
            }
        }

        /// <summary>An object's keys in order (empty for anything else).</summary>
        public IList<string> Keys
        {
            get { return kind == JsonKind.Object ? keys.AsReadOnly() : (IList<string>)new string[0]; }
        }

        /// <summary>An array's items in order (empty for anything else).</summary>
        public IList<JsonValue> Items
        {
            get { return kind == JsonKind.Array ? items.AsReadOnly() : (IList<JsonValue>)new JsonValue[0]; }
        }

        public bool Has(string key)
        {
            return kind == JsonKind.Object && key != null && members.ContainsKey(key);
        }

        /// <summary>The string, or null when this is not a string.</summary>
        public string AsString
        {
            get { return kind == JsonKind.String ? text : null; }
        }

        public bool AsBool(bool fallback = false)
        {
            return kind == JsonKind.Bool ? boolean : fallback;
        }

        public bool TryGetDouble(out double value)
        {
            value = number;
            return kind == JsonKind.Number;
        }

        public double AsDouble(double fallback = 0)
        {
            return kind == JsonKind.Number ? number : fallback;
        }

        /// <summary>A number that is a whole value within a long's range (from its literal, so
        /// large integers stay exact).</summary>
        public bool TryGetLong(out long value)
        {
            value = 0;
            if (kind != JsonKind.Number)
            {
                return false;
            }
            if (long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out value))
            {
                return true;
            }
            // 4.0 or 1e3: whole numbers written as floats. Doubles above 2^53 are not exact.
            if (Math.Floor(number) == number && Math.Abs(number) <= 9007199254740992.0)
            {
                value = (long)number;
                return true;
            }
            return false;
        }

        public long AsLong(long fallback = 0)
        {
            long value;
            return TryGetLong(out value) ? value : fallback;
        }

        /// <summary>Compact JSON text. Throws <see cref="JsonException"/> for
        /// <see cref="Undefined"/> anywhere inside: it has no JSON spelling.</summary>
        public string ToJson()
        {
            var builder = new StringBuilder();
            Write(builder, 0);
            return builder.ToString();
        }

        /// <summary>The JSON text, or "undefined".</summary>
        public override string ToString()
        {
            return kind == JsonKind.Undefined ? "undefined" : ToJson();
        }

        /// <summary>Same JSON value: numbers compare by value (1 equals 1.0), objects ignore key order.</summary>
        public static bool DeepEquals(JsonValue a, JsonValue b)
        {
            a = a ?? Null;
            b = b ?? Null;
            if (a.kind != b.kind)
            {
                return false;
            }
            switch (a.kind)
            {
                case JsonKind.Bool:
                    return a.boolean == b.boolean;
                case JsonKind.Number:
                    return a.number == b.number;
                case JsonKind.String:
                    return a.text == b.text;
                case JsonKind.Array:
                    if (a.items.Count != b.items.Count)
                    {
                        return false;
                    }
                    for (int i = 0; i < a.items.Count; i++)
                    {
                        if (!DeepEquals(a.items[i], b.items[i]))
                        {
                            return false;
                        }
                    }
                    return true;
                case JsonKind.Object:
                    if (a.keys.Count != b.keys.Count)
                    {
                        return false;
                    }
                    foreach (var key in a.keys)
                    {
                        JsonValue other;
                        if (!b.members.TryGetValue(key, out other) || !DeepEquals(a.members[key], other))
                        {
                            return false;
                        }
                    }
                    return true;
                default:
                    return true;
            }
        }

        // --- parsing ----------------------------------------------------------------------

        /// <summary>Parses one JSON value (whitespace around it allowed, nothing else).
        /// Throws <see cref="JsonException"/> with the position of the first fault.</summary>
        public static JsonValue Parse(string text)
        {
            if (text == null)
            {
                throw new ArgumentNullException("text");
            }
            var parser = new Parser(text);
            parser.SkipWhitespace();
            JsonValue value = parser.ParseValue(0);
            parser.SkipWhitespace();
            if (parser.Pos != text.Length)
            {
                throw new JsonException("unexpected text after the JSON value", parser.Pos);
            }
            return value;
        }

        /// <summary><see cref="Parse"/> without the exception: false and the error's message.</summary>
        public static bool TryParse(string text, out JsonValue value, out string error)
        {
            try
            {
                value = Parse(text);
                error = null;
                return true;
            }
            catch (JsonException err)
            {
                value = Undefined;
                error = err.Message;
                return false;
            }
        }

        sealed class Parser
        {
            readonly string s;
            public int Pos;

            public Parser(string text)
            {
                s = text;
            }

            JsonException Fail(string message)
            {
                return new JsonException(message, Pos);
            }

            public void SkipWhitespace()
            {
                while (Pos < s.Length)
                {
                    char c = s[Pos];
                    if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
                    {
                        return;
                    }
                    Pos++;
                }
            }

            public JsonValue ParseValue(int depth)
            {
                if (Pos >= s.Length)
                {
                    throw Fail("unexpected end of JSON");
                }
                char c = s[Pos];
                switch (c)
                {
                    case '{':
                        return ParseObject(depth + 1);
                    case '[':
                        return ParseArray(depth + 1);
                    case '"':
                        return new JsonValue(JsonKind.String) { text = ParseString() };
                    case 't':
                        Expect("true");
                        return True;
                    case 'f':
                        Expect("false");
                        return False;
                    case 'n':
                        Expect("null");
                        return Null;
                    default:
                        if (c == '-' || (c >= '0' && c <= '9'))
                        {
                            return ParseNumber();
                        }
                        throw Fail("unexpected character '" + c + "'");
                }
            }

            void Expect(string word)
            {
                if (string.CompareOrdinal(s, Pos, word, 0, word.Length) != 0)
                {
                    throw Fail("expected " + word);
                }
                Pos += word.Length;
            }

            JsonValue ParseObject(int depth)
            {
                if (depth > MaxDepth)
                {
                    throw Fail("nested deeper than " + MaxDepth);
                }
                Pos++; // '{'
                var obj = NewObject();
                SkipWhitespace();
                if (Pos < s.Length && s[Pos] == '}')
                {
                    Pos++;
                    return obj;
                }
                while (true)
                {
                    SkipWhitespace();
                    if (Pos >= s.Length || s[Pos] != '"')
                    {
                        throw Fail("expected a string key");
                    }
                    string key = ParseString();
                    SkipWhitespace();
                    if (Pos >= s.Length || s[Pos] != ':')
                    {
                        throw Fail("expected ':'");
                    }
                    Pos++;
                    SkipWhitespace();
                    // A repeated key keeps the last value, as JavaScript does.
                    obj.Set(key, ParseValue(depth));
                    SkipWhitespace();
                    if (Pos >= s.Length)
                    {
                        throw Fail("unexpected end of JSON in an object");
                    }
                    char c = s[Pos++];
                    if (c == '}')
                    {
                        return obj;
                    }
                    if (c != ',')
                    {
                        Pos--;
                        throw Fail("expected ',' or '}'");
                    }
                }
            }

            JsonValue ParseArray(int depth)
            {
                if (depth > MaxDepth)
                {
                    throw Fail("nested deeper than " + MaxDepth);
                }
                Pos++; // '['
                var array = NewArray();
                SkipWhitespace();
                if (Pos < s.Length && s[Pos] == ']')
                {
                    Pos++;
                    return array;
                }
                while (true)
                {
                    SkipWhitespace();
                    array.items.Add(ParseValue(depth));
                    SkipWhitespace();
                    if (Pos >= s.Length)
                    {
                        throw Fail("unexpected end of JSON in an array");
                    }
                    char c = s[Pos++];
                    if (c == ']')
                    {
                        return array;
                    }
                    if (c != ',')
                    {
                        Pos--;
                        throw Fail("expected ',' or ']'");
                    }
                }
            }

            string ParseString()
            {
                Pos++; // opening quote
                int start = Pos;
                // Fast path: no escapes.
                while (Pos < s.Length)
                {
                    char c = s[Pos];
                    if (c == '"')
                    {
                        return s.Substring(start, Pos++ - start);
                    }
                    if (c == '\\')
                    {
                        break;
                    }
                    if (c < 0x20)
                    {
                        throw Fail("raw control character in a string");
                    }
                    Pos++;
                }
                var builder = new StringBuilder();
                builder.Append(s, start, Pos - start);
                while (true)
                {
                    if (Pos >= s.Length)
                    {
                        throw Fail("unterminated string");
                    }
                    char c = s[Pos++];
                    if (c == '"')
                    {
                        return builder.ToString();
                    }
                    if (c < 0x20)
                    {
                        Pos--;
                        throw Fail("raw control character in a string");
                    }
                    if (c != '\\')
                    {
                        builder.Append(c);
                        continue;
                    }
                    if (Pos >= s.Length)
                    {
                        throw Fail("unterminated escape");
                    }
                    char e = s[Pos++];
                    switch (e)
                    {
                        case '"': builder.Append('"'); break;
                        case '\\': builder.Append('\\'); break;
                        case '/': builder.Append('/'); break;
                        case 'b': builder.Append('\b'); break;
                        case 'f': builder.Append('\f'); break;
                        case 'n': builder.Append('\n'); break;
                        case 'r': builder.Append('\r'); break;
                        case 't': builder.Append('\t'); break;
                        case 'u': builder.Append(ParseHex4()); break;
                        default:
                            Pos--;
                            throw Fail("unknown escape '\\" + e + "'");
                    }
                }
            }

            char ParseHex4()
            {
                if (Pos + 4 > s.Length)
                {
                    throw Fail("short \\u escape");
                }
                int value = 0;
                for (int i = 0; i < 4; i++)
                {
                    char h = s[Pos++];
                    int digit;
                    if (h >= '0' && h <= '9') digit = h - '0';
                    else if (h >= 'a' && h <= 'f') digit = h - 'a' + 10;
                    else if (h >= 'A' && h <= 'F') digit = h - 'A' + 10;
                    else
                    {
                        Pos--;
                        throw Fail("bad hex digit in a \\u escape");
                    }
                    value = value * 16 + digit;
                }
                // Surrogate pairs arrive as two escapes; each is one UTF-16 unit of the string.
                return (char)value;
            }

            JsonValue ParseNumber()
            {
                int start = Pos;
                if (s[Pos] == '-')
                {
                    Pos++;
                }
                if (Pos >= s.Length || !IsDigit(s[Pos]))
                {
                    throw Fail("expected a digit");
                }
                if (s[Pos] == '0')
                {
                    Pos++;
                }
                else
                {
                    while (Pos < s.Length && IsDigit(s[Pos])) Pos++;
                }
                if (Pos < s.Length && s[Pos] == '.')
                {
                    Pos++;
                    if (Pos >= s.Length || !IsDigit(s[Pos]))
                    {
                        throw Fail("expected a digit after '.'");
                    }
                    while (Pos < s.Length && IsDigit(s[Pos])) Pos++;
                }
                if (Pos < s.Length && (s[Pos] == 'e' || s[Pos] == 'E'))
                {
                    Pos++;
                    if (Pos < s.Length && (s[Pos] == '+' || s[Pos] == '-'))
                    {
                        Pos++;
                    }
                    if (Pos >= s.Length || !IsDigit(s[Pos]))
                    {
                        throw Fail("expected a digit in the exponent");
                    }
                    while (Pos < s.Length && IsDigit(s[Pos])) Pos++;
                }
                string literal = s.Substring(start, Pos - start);
                double value;
                try
                {
                    value = double.Parse(literal, NumberStyles.Float, CultureInfo.InvariantCulture);
                }
                catch (OverflowException)
                {
                    // .NET Framework and Mono throw past a double's range; .NET Core gives
                    // infinity. The literal is kept either way.
                    value = literal[0] == '-' ? double.NegativeInfinity : double.PositiveInfinity;
                }
                return new JsonValue(JsonKind.Number) { number = value, text = literal };
            }

            static bool IsDigit(char c)
            {
                return c >= '0' && c <= '9';
            }
        }

        // --- writing ----------------------------------------------------------------------

        void Write(StringBuilder output, int depth)
        {
            if (depth > MaxDepth)
            {
                throw new JsonException("nested deeper than " + MaxDepth, -1);
            }
            switch (kind)
            {
                case JsonKind.Undefined:
                    throw new JsonException("an undefined value has no JSON spelling", -1);
                case JsonKind.Null:
                    output.Append("null");
                    break;
                case JsonKind.Bool:
                    output.Append(boolean ? "true" : "false");
                    break;
                case JsonKind.Number:
                    output.Append(text);
                    break;
                case JsonKind.String:
                    WriteString(output, text);
                    break;
                case JsonKind.Array:
                    output.Append('[');
                    for (int i = 0; i < items.Count; i++)
                    {
                        if (i > 0)
                        {
                            output.Append(',');
                        }
                        items[i].Write(output, depth + 1);
                    }
                    output.Append(']');
                    break;
                case JsonKind.Object:
                    output.Append('{');
                    for (int i = 0; i < keys.Count; i++)
                    {
                        if (i > 0)
                        {
                            output.Append(',');
                        }
                        WriteString(output, keys[i]);
                        output.Append(':');
                        members[keys[i]].Write(output, depth + 1);
                    }
                    output.Append('}');
                    break;
            }
        }

        /// <summary>A JSON string literal: quotes, backslashes and control characters escaped;
        /// everything else as is (the frame is UTF-8).</summary>
        public static void WriteString(StringBuilder output, string value)
        {
            output.Append('"');
            foreach (char c in value)
            {
                switch (c)
                {
                    case '"': output.Append("\\\""); break;
                    case '\\': output.Append("\\\\"); break;
                    case '\n': output.Append("\\n"); break;
                    case '\r': output.Append("\\r"); break;
                    case '\t': output.Append("\\t"); break;
                    case '\b': output.Append("\\b"); break;
                    case '\f': output.Append("\\f"); break;
                    default:
                        if (c < 0x20)
                        {
                            output.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                        }
                        else
                        {
                            output.Append(c);
                        }
                        break;
                }
            }
            output.Append('"');
        }

        /// <summary>The shortest text that reads back as the same double ("R"; .NET Framework's
        /// "R" misses for a few values, so the result is checked and G17 used then).</summary>
        static string FormatDouble(double value)
        {
            string text = value.ToString("R", CultureInfo.InvariantCulture);
            if (double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture) != value)
            {
                text = value.ToString("G17", CultureInfo.InvariantCulture);
            }
            return text;
        }
    }
}
