import DataSourceDomain
import Testing

@Suite struct FilterParserTests {
    let columns = [
        DataColumn(name: "price", type: .number), DataColumn(name: "category", type: .string),
        DataColumn(name: "in_stock", type: .boolean), DataColumn(name: "unit price", type: .number),
        DataColumn(name: "day", type: .date),
    ]

    @Test func precedenceIsNotThenAndThenOr() throws {
        let parsed = try FilterParser.parse("NOT in_stock OR price > 1 AND category = 'a'", columns: columns)
        #expect(parsed == .or(
            .not(.truthy(column: "in_stock")),
            .and(.compare(column: "price", op: .greater, value: .integer(1)), .compare(column: "category", op: .equal, value: .string("a")))))
    }

    @Test func quotingAndEscapes() throws {
        #expect(try FilterParser.parse("`unit price` >= -1.5e2", columns: columns) == .compare(column: "unit price", op: .greaterOrEqual, value: .number(-150)))
        #expect(try FilterParser.parse("category = 'it''s'", columns: columns) == .compare(column: "category", op: .equal, value: .string("it's")))
        #expect(try FilterParser.parse("category = \"say \"\"hi\"\"\"", columns: columns) == .compare(column: "category", op: .equal, value: .string("say \"hi\"")))
        #expect(try FilterParser.parse("category in ('a','b')", columns: columns) == .isIn(column: "category", values: [.string("a"), .string("b")], negated: false))
        #expect(try FilterParser.parse("price <> 2", columns: columns) == .compare(column: "price", op: .notEqual, value: .integer(2)))
    }

    @Test(arguments: [
        ("nope = 1", 0), ("price = 'x'", 8), ("price >", 7), ("(price > 1", 10), ("day > 'soon'", 6), ("category", 8),
    ])
    func errorsCarryPositions(_ text: String, _ position: Int) {
        #expect(throws: FilterError.self) { try FilterParser.parse(text, columns: columns) }
        do {
            _ = try FilterParser.parse(text, columns: columns)
        } catch {
            #expect(error.position == position, "\(text): \(error.reason)")
        }
    }

    @Test func nestingCountsAlternationsNotChainLength() throws {
        let chain = Array(repeating: "price>1", count: 300).joined(separator: " AND ")
        #expect(try FilterParser.parse(chain, columns: columns).nesting == 1)
        let nots = String(repeating: "NOT ", count: 50) + "in_stock"
        #expect(try FilterParser.parse(nots, columns: columns).nesting == 0)
        #expect(try FilterParser.parse("NOT " + nots, columns: columns).nesting == 1)
        let parens = String(repeating: "(", count: 64) + "price > 1" + String(repeating: ")", count: 64)
        #expect(try FilterParser.parse(parens, columns: columns).nesting == 0)
        #expect(throws: FilterError.self) {
            try FilterParser.parse("(" + parens + ")", columns: columns)
        }
    }

    @Test func alternationBeyondTheBoundIsRefused() {
        var expression = "price > 1"
        for level in 0..<25 { expression = "(price < 0 \(level % 2 == 0 ? "OR" : "AND") \(expression))" }
        #expect(throws: FilterError.self) { try FilterParser.parse(expression, columns: columns) }
    }

    @Test func likeGetsAHint() {
        do {
            _ = try FilterParser.parse("category LIKE 'a%'", columns: columns)
            Issue.record("LIKE was accepted")
        } catch {
            #expect(error.reason.contains("CONTAINS") && error.position == 9)
        }
    }
}
