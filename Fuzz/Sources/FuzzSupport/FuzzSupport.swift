import Foundation
import LibFuzzerDriver

/// A directory of this process's own for the files a fuzz input is written to (the readers
/// take files, not bytes); removed again at exit.
public let scratchDirectory: URL = {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("datasource-agent-fuzz-\(getpid())")
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    atexit { try? FileManager.default.removeItem(at: scratchDirectory) }
    return url
}()

/// The bytes libFuzzer hands over, copied (the buffer is only valid during the call).
public func bytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    guard let data, size > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: size))
}

/// Writes `bytes` to a scratch file called `name` and returns its URL.
public func scratchFile(_ name: String, _ bytes: some Sequence<UInt8>) -> URL {
    let url = scratchDirectory.appendingPathComponent(name)
    guard FileManager.default.createFile(atPath: url.path, contents: Data(bytes)) else { violated("cannot write \(url.path)") }
    return url
}

/// Removes everything an input left in the scratch directory, so that a run's disk use stays flat.
public func clearScratch() {
    for name in (try? FileManager.default.contentsOfDirectory(atPath: scratchDirectory.path)) ?? [] {
        try? FileManager.default.removeItem(at: scratchDirectory.appendingPathComponent(name))
    }
}

/// A property of the code under test does not hold: abort, so that libFuzzer keeps the input.
public func violated(_ message: @autoclosure () -> String) -> Never {
    FileHandle.standardError.write(Data("fuzz invariant violated: \(message())\n".utf8))
    abort()
}

/// The signature libFuzzer calls for each input.
public typealias FuzzTarget = @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32

/// Runs libFuzzer over `target`. SwiftPM links an executable with `main` aliased to
/// `<Module>_main` (so that tests can link executables), a symbol that -parse-as-library never
/// emits; each fuzzer defines it with @_cdecl and hands over to libFuzzer's driver here.
public func runLibFuzzer(
    _ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ target: FuzzTarget
) -> Int32 {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, target)
}
