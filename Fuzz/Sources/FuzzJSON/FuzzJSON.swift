import FuzzSupport
import JSONKit

/// The JSON parser must refuse or accept any bytes without crashing, and what it accepts
/// must survive a round trip through the writer: parse(write(v)) is v, and writing is stable.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = bytes(data, size)
    guard let value = try? JSONParser.parse(input) else { return 0 }
    let written = value.serialized()
    let reparsed: JSONValue
    do {
        reparsed = try JSONParser.parse(written)
    } catch {
        violated("the writer's output does not parse: \(error) in \(String(decoding: written, as: UTF8.self))")
    }
    guard same(reparsed, value) else { violated("round trip changed the value: \(String(decoding: written, as: UTF8.self))") }
    guard reparsed.serialized() == written else { violated("writing is not stable: \(String(decoding: written, as: UTF8.self))") }
    return 0
}

/// The process's entry point (see FuzzSupport.runLibFuzzer).
@_cdecl("FuzzJSON_main")
public func fuzzJSONMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runLibFuzzer(argc, argv, fuzzJSON)
}

/// Equality up to the one change the writer makes on purpose: an integral double is written
/// without its fraction, so it reads back as an integer of the same value.
func same(_ a: JSONValue, _ b: JSONValue) -> Bool {
    switch (a, b) {
    case (.int(let x), .double(let y)), (.double(let y), .int(let x)): return Double(x) == y
    case (.array(let x), .array(let y)): return x.count == y.count && zip(x, y).allSatisfy { same($0, $1) }
    case (.object(let x), .object(let y)):
        let xs = x.entries, ys = y.entries
        return xs.count == ys.count && zip(xs, ys).allSatisfy { $0.key == $1.key && same($0.value, $1.value) }
    default: return a == b
    }
}
