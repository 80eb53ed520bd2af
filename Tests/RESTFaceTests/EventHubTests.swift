import JSONKit
@testable import RESTFace
import Testing

@Suite struct EventHubTests {
    static func publish(_ hub: EventHub, _ count: Int) {
        for index in 0..<count { hub.publish(event: "statusChanged", data: ["n": .int(Int64(index))]) }
    }

    static func ids(_ frames: [[UInt8]]) -> [UInt64] {
        frames.compactMap { frame in
            String(decoding: frame, as: UTF8.self).split(separator: "\n").first.flatMap { UInt64($0.dropFirst(4)) }
        }
    }

    @Test func framesAreOneEventEach() {
        let frame = String(decoding: EventHub.frame(id: 7, event: "statusChanged", data: ["a": "x\ny"]), as: UTF8.self)
        #expect(frame == "id: 7\nevent: statusChanged\ndata: {\"a\":\"x\\ny\"}\n\n")
    }

    @Test func resumesFromTheRingAndResyncsOutsideIt() throws {
        let hub = EventHub(capacity: 3, firstId: 100)
        Self.publish(hub, 5)  // ids 100…104; 102…104 retained
        let fresh = try #require(hub.subscribe(lastEventId: nil))
        #expect(fresh.replay.isEmpty && fresh.resync != nil && fresh.position == 104)
        let resumed = try #require(hub.subscribe(lastEventId: "102"))
        #expect(Self.ids(resumed.replay) == [103, 104] && resumed.resync == nil)
        let oldestKept = try #require(hub.subscribe(lastEventId: "101"))
        #expect(Self.ids(oldestKept.replay) == [102, 103, 104] && oldestKept.resync == nil)
        for stale in ["100", "99", "42", "105", "x"] {
            let subscription = try #require(hub.subscribe(lastEventId: stale))
            #expect(subscription.replay.isEmpty && subscription.resync != nil, "\(stale)")
        }
        let upToDate = try #require(hub.subscribe(lastEventId: "104"))
        #expect(upToDate.replay.isEmpty && upToDate.resync == nil)
    }

    @Test func anEmptyHubResumesFromItsStart() throws {
        let hub = EventHub(capacity: 3, firstId: 100)
        let subscription = try #require(hub.subscribe(lastEventId: "99"))
        #expect(subscription.resync == nil && subscription.position == 99)
        Self.publish(hub, 1)
        let later = try #require(hub.subscribe(lastEventId: "99"))
        #expect(Self.ids(later.replay) == [100])
    }

    @Test func aSlowStreamIsEndedAndCloseEndsEveryStream() async throws {
        let hub = EventHub(capacity: 10, backlog: 2, firstId: 1)
        let slow = try #require(hub.subscribe(lastEventId: nil))
        let other = try #require(hub.subscribe(lastEventId: nil))
        Self.publish(hub, 3)  // the third does not fit the backlog of 2
        var received = 0
        for await _ in slow.stream { received += 1 }
        #expect(received == 2)
        #expect(hub.openStreams == 0)
        hub.close()
        var drained = 0
        for await _ in other.stream { drained += 1 }
        #expect(drained == 2)
        #expect(hub.subscribe(lastEventId: nil) == nil)
    }
}
