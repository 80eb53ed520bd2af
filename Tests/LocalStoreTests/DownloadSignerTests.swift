import DataSourceDomain
import Foundation
import Testing
@testable import LocalStore

@Suite struct DownloadSignerTests {
    let signer: DownloadSigner

    init() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("signer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        signer = DownloadSigner(secret: try StoreSecret.loadOrCreate(at: folder.appendingPathComponent("secret")))
    }

    /// (path, expires, signature) of a fresh link.
    func link(expiresIn seconds: Int64 = 3600) -> (String, String, String) {
        let id = DataSourceID(UUID().uuidString.lowercased())!
        let url = URLComponents(string: signer.url(origin: "http://127.0.0.1:1", id: id, expiresAt: Timestamp.now().adding(seconds: seconds)))!
        let query = Dictionary(uniqueKeysWithValues: url.queryItems!.map { ($0.name, $0.value!) })
        return (url.path, query["expires"]!, query["signature"]!)
    }

    @Test func theLinkAsWrittenIsValid() {
        let (path, expires, signature) = link()
        #expect(signature.count == 43)
        #expect(signer.verify(method: "GET", path: path, expires: expires, signature: signature) == .valid)
    }

    @Test func anotherSpellingOfTheExpiryIsATamperedLink() {
        let (path, expires, signature) = link()
        for spelling in ["+" + expires, "0" + expires, "00" + expires, " " + expires, expires + " ", "\t" + expires,
                         expires + "\n", "-" + expires, expires + ".0", "", "1e9", "0x1", "٣" + expires] {
            #expect(signer.verify(method: "GET", path: path, expires: spelling, signature: signature)
                == .invalid(reason: "the link's signature is invalid"), "\(spelling)")
        }
    }

    @Test func anotherSpellingOfTheSignatureIsATamperedLink() {
        var (path, expires, signature) = link()
        var expiresIn: Int64 = 3600
        while !(signature.contains("-") && signature.contains("_")) {
            expiresIn += 1
            (path, expires, signature) = link(expiresIn: expiresIn)
        }
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        let last = alphabet.firstIndex(of: signature.last!)!
        let sameBytes = String(signature.dropLast()) + String(alphabet[last ^ 1])  // only the unused low bits differ
        for spelling in [signature + "=", signature + "==",
                         signature.replacingOccurrences(of: "-", with: "+"), signature.replacingOccurrences(of: "_", with: "/"),
                         sameBytes, " " + signature, signature + "\n", String(signature.prefix(20)) + " " + String(signature.dropFirst(20))] {
            #expect(signer.verify(method: "GET", path: path, expires: expires, signature: spelling)
                == .invalid(reason: "the link's signature is invalid"), "\(spelling)")
        }
    }

    @Test func strictBase64URLDecoding() {
        let bytes = Data((0..<32).map { UInt8($0 * 7 & 0xff) })
        let text = bytes.base64URLEncoded
        #expect(Data(base64URLEncoded: text) == bytes)
        #expect(Data(base64URLEncoded: "") == Data())
        for bad in [text + "=", "A", "AB=", "AB+C", "AB/C", "AB C", "ABC\n", "AB_=", "AC"] {
            #expect(Data(base64URLEncoded: bad) == nil, "\(bad)")
        }
        #expect(Data(base64URLEncoded: "AA") == Data([0]))
    }
}
