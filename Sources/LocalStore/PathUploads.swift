import DataSourceDomain
import Foundation
import JSONKit

/// What a `path` upload may read, and the copy that puts its bytes into the store.
///
/// The file is opened once, without blocking (a FIFO with no writer must not hang the
/// handler), checked on that descriptor to be a regular file, and its bytes are copied; the
/// user's file is only ever read, whatever it is linked to. The checks on where it lives use
/// the path the descriptor actually resolved to, so a symlink cannot lead around them.
public struct PathUploadPolicy: Sendable {
    /// The store itself (its secret, catalog and originals) is never readable by upload.
    let storeRoot: String
    /// When not empty, uploads read only files under these directories (`--allow-path`).
    let allowedDirectories: [String]

    public init(storeRoot: URL, allowedDirectories: [String] = []) {
        self.storeRoot = Self.resolved(storeRoot.path) ?? storeRoot.standardizedFileURL.path
        self.allowedDirectories = allowedDirectories.map { Self.resolved($0) ?? URL(fileURLWithPath: $0).standardizedFileURL.path }
    }

    static func resolved(_ path: String) -> String? {
        guard let pointer = realpath(path, nil) else { return nil }
        defer { free(pointer) }
        return String(cString: pointer)
    }

    static func isInside(_ path: String, directory: String) -> Bool {
        directory == "/" || path == directory || path.hasPrefix(directory.hasSuffix("/") ? directory : directory + "/")
    }

    /// Copies the regular file at `path` to `destination` (created 0600, never existing
    /// before), returning the name the user gave it.
    public func copy(from path: String, to destination: URL) throws -> String {
        func invalid(_ reason: String) -> DataSourceError {
            DataSourceError.invalidParameter("path", value: .string(path), reason: reason)
        }
        guard !path.utf8.contains(0) else { throw invalid("must not contain a NUL character") }
        guard path.hasPrefix("/") else { throw invalid("must be an absolute path") }
        let source = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        guard source >= 0 else {
            switch errno {
            case ENOENT, ENOTDIR: throw invalid("no such file")
            case EACCES, EPERM: throw invalid("the agent cannot read this file")
            case ENXIO: throw invalid("not a regular file")
            case ELOOP: throw invalid("too many levels of symbolic links")
            default: throw invalid("cannot be opened: \(String(cString: strerror(errno)))")
            }
        }
        defer { close(source) }
        var info = stat()
        guard fstat(source, &info) == 0 else { throw invalid("cannot be read: \(String(cString: strerror(errno)))") }
        switch info.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: throw invalid("is a directory, not a file")
        default: throw invalid("not a regular file (a device, FIFO or socket cannot be uploaded)")
        }
        let real = Self.descriptorPath(source) ?? Self.resolved(path) ?? path
        if Self.isInside(real, directory: storeRoot) {
            throw invalid("is inside the agent's store, whose files cannot be uploaded")
        }
        if !allowedDirectories.isEmpty, !allowedDirectories.contains(where: { Self.isInside(real, directory: $0) }) {
            throw DataSourceError.invalidParameter(
                "path", value: .string(path), reason: "is outside the directories this agent may read (--allow-path)",
                extra: ["allowed": .array(allowedDirectories.map { .string($0) })])
        }
        // Reads from here on may block like any regular file read, never forever.
        let flags = fcntl(source, F_GETFL)
        if flags >= 0 { _ = fcntl(source, F_SETFL, flags & ~O_NONBLOCK) }

        let target = try NewStoreFile(destination)
        // Inside the kernel when it can (no trip through this process's memory); whatever it
        // did not copy, the loop below reads and writes (it starts where the kernel stopped).
        if info.st_size > 0 { target.copyInKernel(from: source) }
        let bufferSize = 1 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let count = read(source, buffer, bufferSize)
            if count < 0 {
                if errno == EINTR { continue }
                throw invalid("could not be read: \(String(cString: strerror(errno)))")
            }
            if count == 0 { break }
            try target.write(buffer, count: count)
        }
        try target.keep()
        return (path as NSString).lastPathComponent
    }

    /// The path an open descriptor refers to, with every symlink resolved (Linux's /proc).
    static func descriptorPath(_ fd: Int32) -> String? {
        #if os(Linux)
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/fd/\(fd)", &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        #else
        var buffer = [CChar](repeating: 0, count: Int(MAXPATHLEN))
        guard fcntl(fd, F_GETPATH, &buffer) == 0 else { return nil }
        return String(cString: buffer)
        #endif
    }
}

/// A file being written into the store: created exclusively with mode 0600, and removed
/// again unless `keep()` synced it. Every failure is a storage error (a full disk, say).
final class NewStoreFile {
    let url: URL
    private let fd: Int32
    private var kept = false

    init(_ url: URL) throws {
        self.url = url
        fd = open(url.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw DataSourceError.storeWrite(errno: errno) }
    }

    func write(_ bytes: UnsafeRawPointer, count: Int) throws {
        var written = 0
        while written < count {
            let n = Foundation.write(fd, bytes + written, count - written)
            if n < 0 {
                if errno == EINTR { continue }
                throw DataSourceError.storeWrite(errno: errno)
            }
            written += n
        }
    }

    /// Copies `source` from its offset to its end into the file with `copy_file_range`, as far
    /// as the kernel can, starting the writeback of each 16 MiB as it goes (so that `keep`
    /// has little left to sync); both offsets advance by what was copied, so a caller can go on
    /// with `read` and `write` from there (a different file system, an old kernel, an error).
    func copyInKernel(from source: Int32) {
        #if os(Linux)
        guard let copyFileRange = LinuxFileCalls.copyFileRange else { return }
        while true {
            let count = copyFileRange(source, nil, fd, nil, 16 << 20, 0)
            if count > 0 {
                LinuxFileCalls.startWriteback(fd)
                continue
            }
            if count < 0, errno == EINTR { continue }
            return
        }
        #endif
    }

    /// Syncs the file and keeps it.
    func keep() throws {
        guard fsync(fd) == 0 || errno == EINVAL else { throw DataSourceError.storeWrite(errno: errno) }
        kept = true
    }

    deinit {
        close(fd)
        if !kept { unlink(url.path) }
    }
}

/// glibc calls that Swift's Glibc module does not export, looked up once.
enum LinuxFileCalls {
    #if os(Linux)
    typealias CopyFileRange = @convention(c) (Int32, UnsafeMutablePointer<Int64>?, Int32, UnsafeMutablePointer<Int64>?, Int, UInt32) -> Int
    typealias SyncFileRange = @convention(c) (Int32, Int64, Int64, UInt32) -> Int32

    /// `copy_file_range` (glibc 2.27 and later).
    static let copyFileRange: CopyFileRange? = dlsym(dlopen(nil, RTLD_NOW), "copy_file_range").map { unsafeBitCast($0, to: CopyFileRange.self) }
    /// `sync_file_range`.
    static let syncFileRange: SyncFileRange? = dlsym(dlopen(nil, RTLD_NOW), "sync_file_range").map { unsafeBitCast($0, to: SyncFileRange.self) }
    #endif

    /// Asks the kernel to start writing back the file's dirty pages, without waiting for it
    /// (`SYNC_FILE_RANGE_WRITE`); a later `fsync` then has less to do. Nothing elsewhere.
    static func startWriteback(_ fd: Int32) {
        #if os(Linux)
        _ = syncFileRange?(fd, 0, 0, 2)
        #endif
    }
}
