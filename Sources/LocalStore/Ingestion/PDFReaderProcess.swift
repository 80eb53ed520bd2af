import Foundation
import Synchronization

/// Reading a PDF in a process of its own. poppler parses what users upload, in C++; should a
/// crafted file crash it or make it allocate without end, the helper process dies (or hits its
/// memory limit) and the upload fails, while the agent goes on answering.
///
/// The agent's executable runs itself as `<executable> pdf-words <pdf> <output>`: the helper
/// writes "done count" lines on its stdout after each page (progress and heartbeat), the words
/// to `<output>` when it succeeds, and an `IngestionFailure`'s message on its stderr (exit 2)
/// when the PDF cannot be read. Without a helper (unit tests) the words are read in-process.
public enum PDFReaderProcess {
    private static let helper = Mutex<String?>(nil)

    /// Makes every later PDF read run `executable pdf-words …` (the agent calls this at start).
    public static func useHelper(executable: String) { helper.withLock { $0 = executable } }

    /// Address space the helper may use: poppler's own allocations and the words it returns.
    static let memoryLimit: rlim_t = 4 << 30

    /// The helper's side: reads `pdf`, writes its words to `output`. Returns the exit status.
    public static func runHelper(pdf: String, output: String) -> Int32 {
        var limit = rlimit(rlim_cur: memoryLimit, rlim_max: memoryLimit)
        #if os(Linux)
        _ = setrlimit(__rlimit_resource_t(RLIMIT_AS.rawValue), &limit)
        #else
        _ = setrlimit(RLIMIT_AS, &limit)
        #endif
        do {
            let pages = try PDFTextExtraction.readPages(of: URL(fileURLWithPath: pdf), isCancelled: { false }) { done, count in
                let line = "\(done) \(count)\n"
                _ = line.withCString { write(1, $0, strlen($0)) }
            }
            // Private like the store's other files: the words are the user's data.
            guard FileManager.default.createFile(atPath: output, contents: encode(pages), attributes: [.posixPermissions: 0o600]) else {
                throw IngestionFailure("cannot write the PDF's words to \(output)")
            }
            return 0
        } catch let failure as IngestionFailure {
            FileHandle.standardError.write(Data(failure.message.utf8))
            return 2
        } catch {
            FileHandle.standardError.write(Data("the PDF could not be read: \(error)".utf8))
            return 2
        }
    }

    /// The agent's side: the pages' words through the helper when there is one.
    static func pages(of url: URL, workDirectory: URL, isCancelled: () -> Bool, pageRead: (Int, Int) -> Void) throws -> [PDFPageText] {
        guard let executable = helper.withLock({ $0 }) else {
            return try PDFTextExtraction.readPages(of: url, isCancelled: isCancelled, pageRead: pageRead)
        }
        let name = "pdf-words-\(UUID().uuidString)"
        let output = workDirectory.appendingPathComponent(name)
        let errors = workDirectory.appendingPathComponent(name + ".err")
        defer {
            try? FileManager.default.removeItem(at: output)
            try? FileManager.default.removeItem(at: errors)
        }
        var pipe: [Int32] = [0, 0]
        // Close-on-exec, so that a reader started for another upload meanwhile does not hold
        // this one's pipe open (the dup2 onto the helper's stdout clears the flag there; a reader
        // spawned between the two calls closes what it inherited as it starts).
        let made = Foundation.pipe(&pipe)
        if made == 0 { pipe.forEach { _ = fcntl($0, F_SETFD, FD_CLOEXEC) } }
        guard made == 0 else { throw IngestionFailure("cannot start the PDF reader: \(String(cString: strerror(errno)))") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, pipe[1], 1)
        posix_spawn_file_actions_addclose(&actions, pipe[0])
        posix_spawn_file_actions_addopen(&actions, 2, errors.path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let arguments = [executable, "pdf-words", url.path, output.path]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, nil, &argv, environ)
        close(pipe[1])
        defer { close(pipe[0]) }
        guard spawned == 0 else { throw IngestionFailure("cannot start the PDF reader: \(String(cString: strerror(spawned)))") }

        // Progress lines until the helper closes its stdout; cancellation kills it.
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            if isCancelled() {
                kill(pid, SIGKILL)
                _ = reap(pid)
                throw IngestionPipeline.Cancelled()
            }
            var poller = pollfd(fd: pipe[0], events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, 100)
            if ready < 0, errno == EINTR { continue }
            guard ready > 0 else { continue }
            let count = buffer.withUnsafeMutableBytes { read(pipe[0], $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            pending.append(contentsOf: buffer[0..<count])
            while let newline = pending.firstIndex(of: 0x0A) {
                let fields = String(decoding: pending[..<newline], as: UTF8.self).split(separator: " ").compactMap { Int($0) }
                pending.removeSubrange(...newline)
                if fields.count == 2 { pageRead(fields[0], fields[1]) }
            }
        }
        let status = reap(pid)
        if let signal = status.signal {
            throw IngestionFailure("the PDF reader stopped on signal \(signal) (a PDF that poppler cannot handle, or over the memory limit)")
        }
        guard status.code == 0 else {
            let message = (try? String(contentsOf: errors, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            throw IngestionFailure(message.isEmpty ? "the PDF could not be read (its reader exited with status \(status.code))" : message)
        }
        guard let data = try? Data(contentsOf: output), let pages = decode(data) else {
            throw IngestionFailure("the PDF reader's output could not be read")
        }
        return pages
    }

    private static func reap(_ pid: pid_t) -> (code: Int32, signal: Int32?) {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        // The wait status: the signal in the low 7 bits, else the exit code in the next 8.
        let signal = status & 0x7F
        return signal != 0 ? (0, signal) : ((status >> 8) & 0xFF, nil)
    }

    /// Per page: word count (UInt32), height (Float64); per word: x0, y0, x1, y1 (Float64),
    /// the text's UTF-8 length (UInt32) and bytes. Native byte order: the same machine reads it.
    static func encode(_ pages: [PDFPageText]) -> Data {
        var data = Data()
        func put<T>(_ value: T) { withUnsafeBytes(of: value) { data.append(contentsOf: $0) } }
        put(UInt32(pages.count))
        for page in pages {
            put(UInt32(page.words.count))
            put(page.height)
            for word in page.words {
                put(word.x0)
                put(word.y0)
                put(word.x1)
                put(word.y1)
                let text = Array(word.text.utf8)
                put(UInt32(text.count))
                data.append(contentsOf: text)
            }
        }
        return data
    }

    static func decode(_ data: Data) -> [PDFPageText]? {
        let bytes = [UInt8](data)
        var at = 0
        func take<T>(_: T.Type) -> T? {
            guard at + MemoryLayout<T>.size <= bytes.count else { return nil }
            defer { at += MemoryLayout<T>.size }
            return bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: T.self) }
        }
        guard let pageCount = take(UInt32.self) else { return nil }
        var pages: [PDFPageText] = []
        for _ in 0..<pageCount {
            guard let wordCount = take(UInt32.self), let height = take(Double.self) else { return nil }
            var page = PDFPageText(words: [], height: height)
            for _ in 0..<wordCount {
                guard let x0 = take(Double.self), let y0 = take(Double.self), let x1 = take(Double.self), let y1 = take(Double.self),
                    let length = take(UInt32.self), at + Int(length) <= bytes.count
                else { return nil }
                page.words.append(PDFWord(text: String(decoding: bytes[at..<(at + Int(length))], as: UTF8.self), x0: x0, y0: y0, x1: x1, y1: y1))
                at += Int(length)
            }
            pages.append(page)
        }
        return pages
    }
}
