import JSONKit

/// The filter language of SPEC §7, parsed into a tree and checked against a source's column
/// types before anything reaches a backend. Positions are 0-based offsets in characters.
public indirect enum FilterExpression: Sendable, Equatable {
    case and(FilterExpression, FilterExpression)
    case or(FilterExpression, FilterExpression)
    case not(FilterExpression)
    case compare(column: String, op: ComparisonOperator, value: FilterLiteral)
    case text(column: String, op: TextOperator, value: String)
    case isIn(column: String, values: [FilterLiteral], negated: Bool)
    case isNull(column: String, negated: Bool)
    /// A boolean column on its own: `in_stock`, `NOT archived`.
    case truthy(column: String)
}

extension FilterExpression {
    /// The operands of a run of the same connective: `a AND (b AND c) AND d` → [a, b, c, d].
    public func chain(and: Bool) -> [FilterExpression] {
        switch (self, and) {
        case (.and(let l, let r), true), (.or(let l, let r), false):
            return l.chain(and: and) + r.chain(and: and)
        default:
            return [self]
        }
    }

    /// The expression under a run of NOTs, and whether an odd number of them remains:
    /// `NOT NOT x` is `x` (in SQL's three-valued logic too: both are unknown when x is).
    public var strippingNots: (inner: FilterExpression, negated: Bool) {
        var inner = self
        var negated = false
        while case .not(let next) = inner {
            inner = next
            negated.toggle()
        }
        return (inner, negated)
    }

    /// How many levels of AND, OR and NOT alternate, with same-connective chains flattened and
    /// NOT pairs cancelled: the nesting that the compiled SQL has.
    public var nesting: Int {
        switch self {
        case .and, .or:
            let isAnd = if case .and = self { true } else { false }
            return 1 + (chain(and: isAnd).map(\.nesting).max() ?? 0)
        case .not:
            let (inner, negated) = strippingNots
            return (negated ? 1 : 0) + inner.nesting
        default:
            return 0
        }
    }
}

public enum ComparisonOperator: String, Sendable {
    case equal = "=", notEqual = "!=", less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="
}

public enum TextOperator: String, Sendable {
    case contains = "CONTAINS", startsWith = "STARTSWITH", endsWith = "ENDSWITH"
}

public enum FilterLiteral: Sendable, Equatable {
    case number(Double)
    case integer(Int64)
    case string(String)
    case bool(Bool)
    case null
}

public struct FilterError: Error, Sendable, Equatable {
    public var position: Int
    public var reason: String

    public init(position: Int, reason: String) {
        self.position = position
        self.reason = reason
    }

    public func invalidParameters(filter: String) -> DataSourceError {
        DataSourceError(.invalidParameters, details: [
            "parameter": "filter", "filter": .string(filter), "position": .int(Int64(position)), "reason": .string(reason),
        ])
    }
}

public enum FilterParser {
    public static let maxLength = 4096
    /// How deeply parentheses and NOTs may nest in the text (bounds the parser's recursion).
    public static let maxDepth = 64
    /// How deeply AND, OR and NOT may alternate once chains are flattened and NOT NOT
    /// cancelled (`FilterExpression.nesting`); SQLite's parser overflows near 28 such levels,
    /// so every filter accepted here compiles.
    public static let maxNesting = 24
    public static let maxListItems = 1000

    /// `parse`, failing with INVALID_PARAMETERS whose details carry the filter and position.
    public static func parseParameter(_ text: String, columns: [DataColumn]) throws(DataSourceError) -> FilterExpression {
        do throws(FilterError) {
            return try parse(text, columns: columns)
        } catch {
            throw error.invalidParameters(filter: text)
        }
    }

    /// Parses and type-checks `text` against the columns; every problem is a FilterError
    /// with the position it was found at.
    public static func parse(_ text: String, columns: [DataColumn]) throws(FilterError) -> FilterExpression {
        guard text.count <= maxLength else { throw FilterError(position: maxLength, reason: "the filter is longer than \(maxLength) characters") }
        let tokens = try Lexer.tokenize(text)
        var parser = Parser(tokens: tokens, columns: columns)
        let expression = try parser.parseOr(depth: 0)
        guard case .end = parser.peek.kind else {
            if parser.peek.isKeyword("LIKE") {
                throw FilterError(position: parser.peek.position, reason: "LIKE is not supported; use CONTAINS, STARTSWITH or ENDSWITH")
            }
            throw FilterError(position: parser.peek.position, reason: "unexpected \(parser.peek.kind.describe) after a complete expression")
        }
        guard expression.nesting <= maxNesting else {
            throw FilterError(position: 0, reason: "AND, OR and NOT alternate more than \(maxNesting) levels deep")
        }
        return expression
    }
}

struct Token: Equatable {
    enum Kind: Equatable {
        case identifier(String)
        case quotedIdentifier(String)
        case string(String)
        case number(String)
        case op(String)
        case leftParen, rightParen, comma
        case end

        var describe: String {
            switch self {
            case .identifier(let s): "'\(s)'"
            case .quotedIdentifier(let s): "`\(s)`"
            case .string: "a string"
            case .number(let s): "number \(s)"
            case .op(let s): "'\(s)'"
            case .leftParen: "'('"
            case .rightParen: "')'"
            case .comma: "','"
            case .end: "the end of the filter"
            }
        }
    }

    var kind: Kind
    var position: Int

    func isKeyword(_ word: String) -> Bool {
        if case .identifier(let s) = kind { return s.uppercased() == word }
        return false
    }
}

enum Lexer {
    static func tokenize(_ text: String) throws(FilterError) -> [Token] {
        let chars = Array(text)
        var tokens: [Token] = []
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if c.isWhitespace { i += 1; continue }
            let start = i
            switch c {
            case "(": tokens.append(Token(kind: .leftParen, position: i)); i += 1
            case ")": tokens.append(Token(kind: .rightParen, position: i)); i += 1
            case ",": tokens.append(Token(kind: .comma, position: i)); i += 1
            case "=":
                i += (i + 1 < chars.count && chars[i + 1] == "=") ? 2 : 1
                tokens.append(Token(kind: .op("="), position: start))
            case "!":
                guard i + 1 < chars.count, chars[i + 1] == "=" else { throw FilterError(position: i, reason: "'!' must be followed by '='") }
                tokens.append(Token(kind: .op("!="), position: start)); i += 2
            case "<":
                if i + 1 < chars.count, chars[i + 1] == "=" { tokens.append(Token(kind: .op("<="), position: start)); i += 2 }
                else if i + 1 < chars.count, chars[i + 1] == ">" { tokens.append(Token(kind: .op("!="), position: start)); i += 2 }
                else { tokens.append(Token(kind: .op("<"), position: start)); i += 1 }
            case ">":
                if i + 1 < chars.count, chars[i + 1] == "=" { tokens.append(Token(kind: .op(">="), position: start)); i += 2 }
                else { tokens.append(Token(kind: .op(">"), position: start)); i += 1 }
            case "'", "\"":
                let (value, end) = try scanQuoted(chars, from: i, unterminated: "unterminated string")
                tokens.append(Token(kind: .string(value), position: start))
                i = end
            case "`":
                let (name, end) = try scanQuoted(chars, from: i, unterminated: "unterminated back-quoted column name")
                tokens.append(Token(kind: .quotedIdentifier(name), position: start))
                i = end
            default:
                if c.isNumber && c.isASCII || ((c == "-" || c == "+" || c == ".") && i + 1 < chars.count && (chars[i + 1].isASCII && chars[i + 1].isNumber || chars[i + 1] == ".")) {
                    var j = i
                    if chars[j] == "-" || chars[j] == "+" { j += 1 }
                    var digits = 0
                    while j < chars.count, chars[j].isASCII, chars[j].isNumber { j += 1; digits += 1 }
                    if j < chars.count, chars[j] == "." {
                        j += 1
                        while j < chars.count, chars[j].isASCII, chars[j].isNumber { j += 1; digits += 1 }
                    }
                    guard digits > 0 else { throw FilterError(position: start, reason: "invalid number") }
                    if j < chars.count, chars[j] == "e" || chars[j] == "E" {
                        var k = j + 1
                        if k < chars.count, chars[k] == "+" || chars[k] == "-" { k += 1 }
                        let expStart = k
                        while k < chars.count, chars[k].isASCII, chars[k].isNumber { k += 1 }
                        guard k > expStart else { throw FilterError(position: j, reason: "invalid exponent") }
                        j = k
                    }
                    if j < chars.count, chars[j].isLetter || chars[j] == "_" || chars[j] == "." {
                        throw FilterError(position: start, reason: "invalid number")
                    }
                    tokens.append(Token(kind: .number(String(chars[i..<j])), position: start))
                    i = j
                } else if c.isLetter || c == "_" {
                    var j = i
                    while j < chars.count, chars[j].isLetter || chars[j].isNumber || chars[j] == "_" || chars[j] == "." { j += 1 }
                    tokens.append(Token(kind: .identifier(String(chars[i..<j])), position: start))
                    i = j
                } else {
                    throw FilterError(position: i, reason: "unexpected character '\(c)'")
                }
            }
        }
        tokens.append(Token(kind: .end, position: chars.count))
        return tokens
    }

    /// Reads text enclosed in the quote character at `start`, where a doubled quote stands for
    /// one; returns the text and the index just past the closing quote.
    static func scanQuoted(_ chars: [Character], from start: Int, unterminated: String) throws(FilterError) -> (String, Int) {
        let quote = chars[start]
        var value = ""
        var i = start + 1
        while i < chars.count {
            if chars[i] == quote {
                if i + 1 < chars.count, chars[i + 1] == quote { value.append(quote); i += 2; continue }
                return (value, i + 1)
            }
            value.append(chars[i])
            i += 1
        }
        throw FilterError(position: start, reason: unterminated)
    }
}

struct Parser {
    let tokens: [Token]
    let columns: [String: ColumnType]
    /// The column names in the source's order, for messages.
    let columnList: String
    var index = 0

    init(tokens: [Token], columns: [DataColumn]) {
        self.tokens = tokens
        self.columns = Dictionary(columns.map { ($0.name, $0.type) }, uniquingKeysWith: { a, _ in a })
        self.columnList = columns.map { name in
            name.name.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." } ? name.name : "`\(name.name)`"
        }.joined(separator: ", ")
    }

    var peek: Token { tokens[index] }
    mutating func advance() -> Token { defer { index += 1 }; return tokens[index] }

    /// `depth` counts the parentheses and NOTs around the current position; up to
    /// `maxDepth` are allowed.
    mutating func parseOr(depth: Int) throws(FilterError) -> FilterExpression {
        var left = try parseAnd(depth: depth)
        while peek.isKeyword("OR") {
            _ = advance()
            left = .or(left, try parseAnd(depth: depth))
        }
        return left
    }

    mutating func parseAnd(depth: Int) throws(FilterError) -> FilterExpression {
        var left = try parseNot(depth: depth)
        while peek.isKeyword("AND") {
            _ = advance()
            left = .and(left, try parseNot(depth: depth))
        }
        return left
    }

    mutating func parseNot(depth: Int) throws(FilterError) -> FilterExpression {
        if peek.isKeyword("NOT") {
            guard depth < FilterParser.maxDepth else { throw tooDeep(at: peek.position) }
            _ = advance()
            return .not(try parseNot(depth: depth + 1))
        }
        return try parsePrimary(depth: depth)
    }

    mutating func parsePrimary(depth: Int) throws(FilterError) -> FilterExpression {
        let token = peek
        if case .leftParen = token.kind {
            guard depth < FilterParser.maxDepth else { throw tooDeep(at: token.position) }
            _ = advance()
            let inner = try parseOr(depth: depth + 1)
            guard case .rightParen = peek.kind else { throw FilterError(position: peek.position, reason: "expected ')' but found \(peek.kind.describe)") }
            _ = advance()
            return inner
        }
        let (name, type) = try parseColumn()
        let next = peek
        switch next.kind {
        case .op(let symbol):
            _ = advance()
            let op = ComparisonOperator(rawValue: symbol)!
            let literalToken = peek
            let literal = try parseLiteral()
            if case .null = literal {
                guard op == .equal || op == .notEqual else {
                    throw FilterError(position: literalToken.position, reason: "null can only be compared with = or != (or use IS NULL)")
                }
                return .isNull(column: name, negated: op == .notEqual)
            }
            try check(literal, against: type, column: name, at: literalToken.position)
            if type == .boolean, op != .equal, op != .notEqual {
                throw FilterError(position: next.position, reason: "boolean column '\(name)' can only be compared with = or !=")
            }
            return .compare(column: name, op: op, value: literal)
        case .identifier(let word):
            let keyword = word.uppercased()
            if let textOp = TextOperator(rawValue: keyword) {
                _ = advance()
                let literalToken = peek
                guard case .string(let value) = advance().kind else {
                    throw FilterError(position: literalToken.position, reason: "\(keyword) needs a string")
                }
                guard type == .string else {
                    throw FilterError(position: next.position, reason: "\(keyword) applies to text columns; '\(name)' is \(type.rawValue)")
                }
                return .text(column: name, op: textOp, value: value)
            }
            if keyword == "IS" {
                _ = advance()
                var negated = false
                if peek.isKeyword("NOT") { _ = advance(); negated = true }
                guard peek.isKeyword("NULL") else { throw FilterError(position: peek.position, reason: "expected NULL after IS") }
                _ = advance()
                return .isNull(column: name, negated: negated)
            }
            if keyword == "IN" || (keyword == "NOT" && index + 1 < tokens.count && tokens[index + 1].isKeyword("IN")) {
                let negated = keyword == "NOT"
                _ = advance()
                if negated { _ = advance() }
                guard case .leftParen = peek.kind else { throw FilterError(position: peek.position, reason: "expected '(' after IN") }
                _ = advance()
                var values: [FilterLiteral] = []
                while true {
                    let literalToken = peek
                    let literal = try parseLiteral()
                    if case .null = literal {
                        throw FilterError(position: literalToken.position, reason: "null cannot be in an IN list (use IS NULL)")
                    }
                    try check(literal, against: type, column: name, at: literalToken.position)
                    values.append(literal)
                    guard values.count <= FilterParser.maxListItems else {
                        throw FilterError(position: literalToken.position, reason: "an IN list holds at most \(FilterParser.maxListItems) values")
                    }
                    if case .comma = peek.kind { _ = advance(); continue }
                    guard case .rightParen = peek.kind else { throw FilterError(position: peek.position, reason: "expected ',' or ')' in the IN list") }
                    _ = advance()
                    break
                }
                return .isIn(column: name, values: values, negated: negated)
            }
            if keyword == "AND" || keyword == "OR" { break }
            if keyword == "LIKE" || keyword == "ILIKE" || keyword == "MATCH" || keyword == "GLOB" {
                throw FilterError(position: next.position, reason: "\(keyword) is not supported; use CONTAINS, STARTSWITH or ENDSWITH (case-insensitive)")
            }
            throw FilterError(position: next.position, reason: "expected an operator after '\(name)' but found \(next.kind.describe)")
        default:
            break
        }
        // A column on its own must be boolean.
        guard type == .boolean else {
            throw FilterError(position: next.position, reason: "expected an operator after '\(name)' (only a boolean column stands alone)")
        }
        return .truthy(column: name)
    }

    func tooDeep(at position: Int) -> FilterError {
        FilterError(position: position, reason: "nested deeper than \(FilterParser.maxDepth) levels of parentheses and NOT")
    }

    mutating func parseColumn() throws(FilterError) -> (String, ColumnType) {
        let token = advance()
        let name: String
        switch token.kind {
        case .identifier(let word):
            let upper = word.uppercased()
            if ["AND", "OR", "NOT", "IN", "IS", "NULL", "TRUE", "FALSE", "CONTAINS", "STARTSWITH", "ENDSWITH"].contains(upper) {
                throw FilterError(position: token.position, reason: "expected a column name but found the keyword \(upper)")
            }
            name = word
        case .quotedIdentifier(let quoted):
            name = quoted
        default:
            throw FilterError(position: token.position, reason: "expected a column name but found \(token.kind.describe)")
        }
        guard let type = columns[name] else {
            throw FilterError(position: token.position, reason: "unknown column '\(name)'; the columns are \(columnList)")
        }
        return (name, type)
    }

    mutating func parseLiteral() throws(FilterError) -> FilterLiteral {
        let token = advance()
        switch token.kind {
        case .string(let s): return .string(s)
        case .number(let text):
            if let i = Int64(text.hasPrefix("+") ? String(text.dropFirst()) : text) { return .integer(i) }
            guard let d = Double(text), d.isFinite else { throw FilterError(position: token.position, reason: "invalid number \(text)") }
            return .number(d)
        case .identifier(let word):
            switch word.lowercased() {
            case "true": return .bool(true)
            case "false": return .bool(false)
            case "null": return .null
            default: throw FilterError(position: token.position, reason: "expected a value but found '\(word)' (quote strings)")
            }
        default:
            throw FilterError(position: token.position, reason: "expected a value but found \(token.kind.describe)")
        }
    }

    func check(_ literal: FilterLiteral, against type: ColumnType, column: String, at position: Int) throws(FilterError) {
        let fits: Bool
        switch (type, literal) {
        case (.number, .number), (.number, .integer): fits = true
        case (.string, .string): fits = true
        case (.boolean, .bool): fits = true
        case (.date, .string(let s)): fits = FilterDates.date(s) != nil
        case (.datetime, .string(let s)): fits = FilterDates.datetime(s) != nil
        default: fits = false
        }
        guard fits else {
            let expected = switch type {
            case .number: "a number"
            case .string: "a quoted string"
            case .boolean: "true or false"
            case .date: "a date string like '2024-03-14'"
            case .datetime: "a date-time string like '2024-03-14T15:30:00Z'"
            }
            throw FilterError(position: position, reason: "type mismatch: column '\(column)' is \(type.rawValue), so the value must be \(expected)")
        }
    }
}

/// Date literals of filters, read by the same reader as dates in data.
public enum FilterDates {
    /// `YYYY-MM-DD` → the same text, validated.
    public static func date(_ text: String) -> String? {
        ISO8601DateTime.date(text.trimmingCharacters(in: " "))
    }

    /// Any date-time (or date, as midnight UTC) that ingestion reads → seconds since 1970.
    public static func datetime(_ text: String) -> Double? {
        ISO8601DateTime.seconds(text.trimmingCharacters(in: " "))
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
