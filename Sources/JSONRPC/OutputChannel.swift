import Dispatch
import Foundation
import Synchronization

/// The one serialised writer for a stream. Every response and notification goes through it,
/// so frames never interleave; writes happen on a private queue so a slow reader on the other
/// end blocks no handler.
public final class OutputChannel: Sendable {
    private enum Destination: Sendable {
        case fileDescriptor(Int32)
        /// In-process: frames handed to a closure (tests, embedding).
        case sink(@Sendable ([UInt8]) -> Void)
    }

    private let destination: Destination
    private let queue = DispatchQueue(label: "jsonrpc.output")
    private let broken = Atomic<Bool>(false)

    public init(fileDescriptor: Int32) {
        destination = .fileDescriptor(fileDescriptor)
    }

    /// A channel whose frames go to `sink`, one call per frame, in order.
    public init(sink: @escaping @Sendable ([UInt8]) -> Void) {
        destination = .sink(sink)
    }

    public func write(_ bytes: [UInt8]) {
        queue.async { [self] in
            guard !broken.load(ordering: .relaxed) else { return }
            switch destination {
            case .sink(let sink):
                sink(bytes)
            case .fileDescriptor(let fileDescriptor):
                var offset = 0
                while offset < bytes.count {
                    let written = bytes.withUnsafeBytes { buffer in
                        Foundation.write(fileDescriptor, buffer.baseAddress! + offset, buffer.count - offset)
                    }
                    if written < 0 {
                        if errno == EINTR || errno == EAGAIN { continue }
                        // The client went away (EPIPE with SIGPIPE ignored); nothing more can be delivered.
                        broken.store(true, ordering: .relaxed)
                        return
                    }
                    offset += written
                }
            }
        }
    }

    /// Returns once everything queued before the call has been written.
    public func flush() {
        queue.sync {}
    }
}
