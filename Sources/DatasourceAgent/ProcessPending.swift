import ArgumentParser
import Foundation
import LocalStore
import Logging
import PostgresStore

/// Finishes uploads that an agent accepted but could not process before its client left.
///
/// A short-lived client (`ds upload big.csv`) ends its agent as soon as the upload is
/// accepted. Rather than keep that agent (and so the client waiting on it) alive, the agent
/// starts this command in a session of its own and leaves at once; it waits for the agent to
/// be gone, claims the sources the agent left `processing` (the same crash-recovery claim
/// any agent makes at start), processes them, and exits.
struct ProcessPending: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "process-pending",
        abstract: "Process every data source left processing in the store, then exit (started by the agent itself when its client leaves during processing).")

    @OptionGroup var storeOptions: StoreOptions

    @Option(name: .long, help: ArgumentHelp("Wait for this process to exit before claiming its work.", valueName: "PID"))
    var afterPid: Int32?

    func run() async throws {
        _ = setsid()
        Self.closeInheritedDescriptors()
        let logger = try storeOptions.bootstrapLogging()
        if let afterPid {
            let deadline = Date().addingTimeInterval(60)
            while kill(afterPid, 0) == 0 || errno == EPERM, Date() < deadline { usleep(20_000) }
        }
        if let url = try storeOptions.postgresURL() {
            // The agent gave its leases up as it left: take the work over, as any agent would.
            let backend = try await PostgresBackend.open(url, logger: logger, serving: false)
            await backend.processPending()
            logger.debug("process-pending: no work left, closing the store")
            await backend.shutDown()
            logger.info("pending processing finished")
            return
        }
        let root = storeOptions.storeURL()
        guard FileManager.default.fileExists(atPath: root.path) else { return }
        // Opening the store claims and starts every orphaned source (LocalBackend.init).
        PDFWords.isolatePDFReading()
        let backend = try LocalBackend(root: root, logger: logger)
        backend.waitForIdle()
        logger.info("pending processing finished")
    }

    /// Closes what this process inherited beyond stdin, stdout and stderr (the client's pipes
    /// must not stay open because of it). Only descriptors without close-on-exec can have
    /// come through `exec`: the ones the runtime opened since (Dispatch's event descriptors,
    /// which the async command's tasks wake through) have it, and stay open.
    static func closeInheritedDescriptors() {
        #if os(Linux)
        if let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            for fd in entries.compactMap(Int32.init) where fd > 2 {
                let flags = fcntl(fd, F_GETFD)
                if flags >= 0, flags & FD_CLOEXEC == 0 { close(fd) }
            }
        }
        #endif
    }

    /// Starts `process-pending` for this process's store, detached: stdin and stdout on
    /// /dev/null, stderr appended to the store's `worker.log`.
    static func handOff(store: URL, logger: Logger) {
        handOff(arguments: ["--store", store.path], environment: [], log: store.appendingPathComponent("worker.log").path, logger: logger)
    }

    /// The same for a PostgreSQL store: the URL travels in the environment (a password in it
    /// would show in the process list as an argument); stderr goes to the temporary directory's
    /// `datasource-agent-worker.log`.
    static func handOff(postgres url: String, logger: Logger) {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("datasource-agent-worker.log").path
        handOff(arguments: [], environment: ["DATASOURCE_AGENT_STORE=\(url)"], log: log, logger: logger)
    }

    static func handOff(arguments storeArguments: [String], environment extra: [String], log: String, logger: Logger) {
        guard let executable = executablePath() else {
            logger.warning("cannot find the agent's executable to finish processing; the next agent on this store will")
            return
        }
        let arguments = [executable, "process-pending"] + storeArguments + ["--after-pid", String(getpid())]
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let names = Set(extra.map { $0.prefix { $0 != "=" } })
        var inherited: [String] = []
        var entry = environ
        while let pointer = entry.pointee {
            let text = String(cString: pointer)
            if !names.contains(text.prefix { $0 != "=" }) { inherited.append(text) }
            entry += 1
        }
        var envp: [UnsafeMutablePointer<CChar>?] = (inherited + extra).map { strdup($0) } + [nil]
        defer { envp.forEach { free($0) } }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, executable, &actions, nil, &argv, &envp)
        if status == 0 {
            logger.info("processing continues in process \(pid) after this agent exits")
        } else {
            logger.warning("could not start a process to finish processing (\(String(cString: strerror(status)))); the next agent on this store will")
        }
    }

    static func executablePath() -> String? {
        #if os(Linux)
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return path }
        #endif
        return Bundle.main.executablePath
    }
}
