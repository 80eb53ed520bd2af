import JSONKit
import Testing

@Suite struct JSONParserTests {
    @Test func parsesScalarsKeepingIntegersDistinct() throws {
        #expect(try JSONParser.parse("1") == .int(1))
        #expect(try JSONParser.parse("1.0") == .double(1.0))
        #expect(try JSONParser.parse("-2e3") == .double(-2000))
        #expect(try JSONParser.parse("true") == .bool(true))
        #expect(try JSONParser.parse(" null ") == .null)
        #expect(try JSONParser.parse("99999999999999999999") == .double(1e20))
    }

    @Test func keepsObjectKeyOrder() throws {
        let value = try JSONParser.parse(#"{"b":1,"a":2,"c":{"z":1,"y":2}}"#)
        #expect(value.objectValue?.keys == ["b", "a", "c"])
        #expect(value["c"]?.objectValue?.keys == ["z", "y"])
    }

    @Test func decodesEscapesAndSurrogates() throws {
        #expect(try JSONParser.parse(#""a\"b\\c\/d\n\u00e9\ud83d\ude00""#) == .string("a\"b\\c/d\né😀"))
        #expect(try JSONParser.parse(#""\ud800x""#) == .string("\u{FFFD}x"))
    }

    @Test(arguments: ["", "{", "[1,]", "{\"a\"}", "01", "1.", "-", "tru", "\"\u{01}\"", "[1] x", "{\"a\":1,}", "\"\\x\""])
    func rejectsMalformed(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(text) }
    }

    /// Found by Fuzz/FuzzJSON: 1e400 read as infinity, which the writer sends back as null.
    @Test(arguments: ["1e400", "-1e400", "[0.1,123456789011e2345901234567890]", "1" + String(repeating: "0", count: 400) + ".0"])
    func refusesNumbersBeyondDoubleRange(_ text: String) throws {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(text) }
        #expect(try JSONParser.parse("1e308") == .double(1e308))
        #expect(try JSONParser.parse("1e-400") == .double(0))
    }

    @Test func boundsNestingDepth() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(deep) }
    }
}

@Suite struct JSONWriterTests {
    @Test func roundTrips() throws {
        let text = #"{"s":"q\"\\\n\t\u0001é","i":-42,"d":1.5,"b":false,"n":null,"a":[1,{"x":[]}],"o":{}}"#
        let value = try JSONParser.parse(text)
        #expect(try JSONParser.parse(value.serialized()) == value)
        #expect(value.jsonText == text)
    }

    @Test func integralDoublesPrintWithoutFraction() {
        var writer = JSONWriter()
        writer.double(3.0)
        writer.byte(0x20)
        writer.double(.nan)
        writer.byte(0x20)
        writer.int(Int64.min)
        #expect(String(decoding: writer.bytes, as: UTF8.self) == "3 null -9223372036854775808")
    }
}

@Suite struct JSONValueDecoderTests {
    struct Params: Decodable, Equatable {
        var limit: Int?
        var name: String
        var flag: Bool?
    }

    @Test func decodesStrictly() throws {
        let decoder = JSONValueDecoder()
        #expect(try decoder.decode(Params.self, from: ["name": "x", "limit": 5]) == Params(limit: 5, name: "x", flag: nil))
        #expect(try decoder.decode(Params.self, from: ["name": "x", "limit": .null]) == Params(limit: nil, name: "x", flag: nil))
        #expect(throws: DecodingError.self) { try decoder.decode(Params.self, from: ["name": "x", "limit": 2.5]) }
        #expect(throws: DecodingError.self) { try decoder.decode(Params.self, from: ["name": "x", "limit": "5"]) }
        #expect(throws: DecodingError.self) { try decoder.decode(Params.self, from: ["name": "x", "flag": 1]) }
        #expect(throws: DecodingError.self) { try decoder.decode(Params.self, from: ["limit": 1]) }
    }
}

@Suite struct UnknownKeyTests {
    struct Options: Decodable { var delimiter: String? }
    struct Params: Decodable {
        var datasourceId: String
        var sort: String?
        var options: Options?
    }

    @Test func unknownKeysAreReportedWithTheAllowedOnes() throws {
        let decoder = JSONValueDecoder(rejectingUnknownKeysExcept: ["_meta"])
        let ok = try decoder.decode(Params.self, from: try JSONParser.parse(#"{"datasourceId": "a", "_meta": {}}"#))
        #expect(ok.datasourceId == "a")
        do {
            _ = try decoder.decode(Params.self, from: try JSONParser.parse(#"{"datasourceId": "a", "sortt": "x"}"#))
            Issue.record("accepted an unknown key")
        } catch let error as UnknownKeyError {
            #expect(error.key == "sortt" && error.path.isEmpty && error.allowed == ["datasourceId", "sort", "options"])
        }
        do {
            _ = try decoder.decode(Params.self, from: try JSONParser.parse(#"{"datasourceId": "a", "options": {"delimter": ","}}"#))
            Issue.record("accepted an unknown nested key")
        } catch let error as UnknownKeyError {
            #expect(error.path == ["options"] && error.key == "delimter")
        }
        // Without the option the decoder stays lenient.
        _ = try JSONValueDecoder().decode(Params.self, from: try JSONParser.parse(#"{"datasourceId": "a", "x": 1}"#))
    }

    @Test func suggestionsFindTypos() {
        #expect(Suggestions.closest(to: "datasources/lsit", in: ["datasources/list", "datasources/get"]) == "datasources/list")
        #expect(Suggestions.closest(to: "sortt", in: ["sort", "order"]) == "sort")
        #expect(Suggestions.closest(to: "zzz", in: ["sort", "order"]) == nil)
    }

    @Test func prettyPrintingMatchesPythonsLayout() {
        let value: JSONValue = ["a": [1, 2], "b": [:], "c": [], "d": ["e": "f"]]
        let expected = "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": {},\n  \"c\": [],\n  \"d\": {\n    \"e\": \"f\"\n  }\n}"
        #expect(String(decoding: value.prettyPrinted(indent: 2), as: UTF8.self) == expected)
    }
}
