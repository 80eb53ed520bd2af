import AgentService
import DataSourceDomain
import DownloadListener
import Foundation
import Hummingbird
import JSONKit

extension RESTServer {
    /// Routes beyond the method descriptors' (for 405 answers and their Allow header).
    static let extraRoutes: [(String, String)] = [
        ("GET", HTTPRoute.prefix + "/openapi.json"),
        ("GET", HTTPRoute.prefix + "/events"),
        ("POST", HTTPRoute.prefix + "/events/token"),
        ("POST", RESTServer.mcpPath),
    ] + WebAssets.files.keys.sorted().map { ("GET", $0) }

    static let eventStreamHeaders: HTTPFields = [
        .contentType: "text/event-stream; charset=utf-8",
        .cacheControl: "no-cache, no-store",
        // Proxies that buffer (nginx) would hold the events back.
        .init("X-Accel-Buffering")!: "no",
    ]

    func addEventRoutes(to router: Router<RESTRequestContext>) {
        router.get(RouterPath(HTTPRoute.prefix + "/events")) { [self] request, _ in
            await eventStream(request)
        }
        router.post(RouterPath(HTTPRoute.prefix + "/events/token")) { [self] request, _ in
            await eventToken(request)
        }
    }

    /// The Claro error answer when this key may not receive events; nil when it may.
    private func eventsRefusal(apiKey: String?) async -> Response? {
        do {
            try await service.authorizeEvents(apiKey: apiKey)
            return nil
        } catch let error as DataSourceError {
            return DownloadServer.json(error)
        } catch {
            return DownloadServer.json(DataSourceError(.storageError, details: ["reason": "the request failed inside the agent"]))
        }
    }

    /// `POST /api/v2/events/token` with the key (Bearer) → `{token, expiresIn}`: a token for
    /// `GET /api/v2/events?token=…`, which a browser's EventSource can open.
    func eventToken(_ request: Request) async -> Response {
        let key = Self.bearerKey(request)
        if let refusal = await eventsRefusal(apiKey: key) { return refusal }
        let token = eventTokens.issue(for: key)
        let body: JSONValue = [
            "token": .string(token),
            "expiresIn": .int(eventTokens.lifetime.components.seconds),
        ]
        var response = RESTMiddleware.body(status: .ok, body)
        response.headers[.cacheControl] = "no-store"
        return response
    }

    /// `GET /api/v2/events`: `statusChanged` events, after a `ready` event that gives the
    /// stream's position and says whether the client must refetch (`resync`).
    func eventStream(_ request: Request) async -> Response {
        let query: [(name: String, value: String)]
        do {
            query = try Self.queryItems(request.uri.query)
            for (name, _) in query where name != "token" && name != "lastEventId" {
                throw DataSourceError.invalidParameter(
                    name, value: nil, reason: "unknown parameter", extra: ["allowed": ["lastEventId", "token"]])
            }
            for name in ["token", "lastEventId"] where query.filter({ $0.name == name }).count > 1 {
                throw DataSourceError.invalidParameter(name, value: nil, reason: "is given more than once")
            }
        } catch let error as DataSourceError {
            return DownloadServer.json(error)
        } catch {
            return DownloadServer.json(DataSourceError.invalidParameter("query", value: nil, reason: "is not valid"))
        }
        var key = Self.bearerKey(request)
        if let token = query.first(where: { $0.name == "token" })?.value {
            guard key == nil else {
                return DownloadServer.json(DataSourceError.invalidParameter(
                    "token", value: nil, reason: "give either the Authorization header or a token, not both"))
            }
            guard case .some(let tokenKey) = eventTokens.key(for: token) else {
                return DownloadServer.json(DataSourceError(.unauthorized, details: ["message": "events token invalid or expired"]))
            }
            key = tokenKey
        }
        if let refusal = await eventsRefusal(apiKey: key) { return refusal }
        let lastEventId = request.headers[.init("Last-Event-ID")!] ?? query.first(where: { $0.name == "lastEventId" })?.value
        guard let subscription = events.subscribe(lastEventId: lastEventId) else {
            var response = DownloadServer.json(DataSourceError(.storageError, details: ["reason": "the server is shutting down"]))
            response.status = .serviceUnavailable
            return response
        }
        let events = self.events
        let service = self.service
        var ready: JSONObject = ["resync": .bool(subscription.resync != nil), "replayed": .int(Int64(subscription.replay.count))]
        if let reason = subscription.resync { ready["reason"] = .string(reason) }
        let readyFrame = EventHub.frame(id: subscription.position, event: "ready", data: .object(ready))
        let streamKey = key
        return Response(status: .ok, headers: Self.eventStreamHeaders, body: ResponseBody { writer in
            defer { events.unsubscribe(subscription.id) }
            // The browser's reconnection delay, then what was missed, then the position.
            var opening = ByteBuffer(string: "retry: 2000\n\n")
            for frame in subscription.replay { opening.writeBytes(frame) }
            opening.writeBytes(readyFrame)
            try await writer.write(opening)
            for await item in subscription.stream {
                switch item {
                case .frame(let frame):
                    try await writer.write(ByteBuffer(bytes: frame))
                case .heartbeat:
                    // A revoked key's stream ends at the next heartbeat.
                    guard (try? await service.authorizeEvents(apiKey: streamKey)) != nil else {
                        try await writer.finish(nil)
                        return
                    }
                    try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                }
            }
            try await writer.finish(nil)
        })
    }
}
