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
/// `flags` are added after the command line's, so that they win over what scripts/fuzz passes
/// to every target.
public func runLibFuzzer(
    _ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ target: FuzzTarget, flags: [String] = []
) -> Int32 {
    var argc = argc
    var argv = argv
    if !flags.isEmpty {
        // Kept for the whole run: libFuzzer holds on to its arguments.
        let arguments = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: Int(argc) + flags.count + 1)
        for i in 0..<Int(argc) { arguments[i] = argv?[i] }
        for (i, flag) in flags.enumerated() { arguments[Int(argc) + i] = strdup(flag) }
        arguments[Int(argc) + flags.count] = nil
        argc += Int32(flags.count)
        argv = arguments
    }
    return LLVMFuzzerRunDriver(&argc, &argv, target)
}

/// Leak checking for a target whose inputs end on other threads. libFuzzer counts the
/// allocations and frees made while an input runs and, when more were made than freed, runs
/// the input again and scans the whole heap — about 100 ms on a fuzzer's heap. Work that a
/// Swift task or a dispatch queue finishes after the input returns, and libdispatch's
/// per-thread caches of queue items, unbalance that count on nearly every input though
/// nothing leaks, so such a target runs with that check off (`-detect_leaks=0`) and
/// scans the heap itself every `interval` inputs instead: a leak found then stops the run
/// like any failure (LeakSanitizer prints where the memory was allocated), and the input
/// kept is the one that was running, which need not be the one that leaked.
public struct PeriodicLeakCheck: ~Copyable {
    public static let libFuzzerFlags = ["-detect_leaks=0"]
    private let interval: Int
    private var inputs = 0

    public init(every interval: Int) { self.interval = interval }

    public mutating func inputFinished() {
        inputs += 1
        guard inputs % interval == 0 else { return }
        if __lsan_do_recoverable_leak_check() != 0 { violated("LeakSanitizer found a leak (its report is above)") }
    }
}
