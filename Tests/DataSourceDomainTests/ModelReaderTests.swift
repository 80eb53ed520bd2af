import DataSourceDomain
import JSONKit
import Testing

@Suite struct ModelReaderTests {
    static let id = DataSourceID("550e8400-e29b-41d4-a716-446655440000")!

    static var details: DataSourceDetails {
        DataSourceDetails(
            summary: DataSourceSummary(
                datasourceId: id, fileName: "products.csv", contentType: "text/csv", fileSize: 245_760, status: .completed,
                uploadedAt: Timestamp(secondsSince1970: 1_710_430_200), processedAt: Timestamp(secondsSince1970: 1_710_430_320)),
            columns: [
                DataColumn(name: "price", type: .number, sampleValues: [29.99, 39.99],
                           cleaning: [CleaningNote(rule: .currencySymbolRemoved, count: 2, from: "$29.99", to: 29.99)]),
            ],
            rowCount: 1250, processingStats: ProcessingStats(cleanedRows: 1250, errors: 0, warnings: 3),
            issues: [ProcessingIssue(severity: .warning, line: 3, column: "price", kind: "number_cleaned", reason: "currency")])
    }

    @Test func detailsReadBackWhatTheWriterWrote() throws {
        let read = try DataSourceDetails(json: Self.details.json)
        #expect(read == Self.details)
        #expect(read.json == Self.details.json)
    }

    @Test func listPageReadsTheDocumentedExample() throws {
        let json = try JSONParser.parse("""
            {"dataSources": [{"datasourceId": "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "fileName": "suppliers.pdf",
              "contentType": "application/pdf", "fileSize": 512000, "status": "processing",
              "uploadedAt": "2024-03-14T16:00:00Z", "processedAt": null}],
             "pagination": {"page": 1, "limit": 20, "total": 45, "totalPages": 3}}
            """)
        let page = try ListPage(json: json)
        #expect(page.dataSources[0].status == .processing && page.dataSources[0].processedAt == nil)
        #expect(page.pagination.total == 45 && page.pagination.totalPages == 3)
        #expect(page.json == json)
    }

    @Test func dataPagePutsValuesInColumnOrder() throws {
        let json = try JSONParser.parse("""
            {"data": [{"b": 2, "a": "x"}, {"a": "y"}], "pagination": {"page": 1, "limit": 50, "total": 2, "totalPages": 1},
             "columns": [{"name": "a", "type": "string"}, {"name": "b", "type": "number"}]}
            """)
        let page = try DataPage(json: json)
        #expect(page.rows == [["x", 2], ["y", .null]])
        #expect(page.pagination.nextCursor == nil)
    }

    @Test func mismatchesNameTheField() {
        #expect(throws: ModelJSONError.self) { try DataSourceSummary(json: ["datasourceId": "nope"]) }
        do {
            _ = try ListPage(json: ["dataSources": [["datasourceId": .string(Self.id.rawValue)]], "pagination": [:]])
            Issue.record("expected an error")
        } catch {
            #expect(error.field == "dataSources[0].fileName")
        }
        do {
            _ = try DownloadLink(json: ["downloadUrl": "u", "fileName": "f", "expiresAt": "soon"])
            Issue.record("expected an error")
        } catch {
            #expect(error.field == "expiresAt")
        }
    }

    @Test func claroErrorBodies() {
        let error = DataSourceError(claroBody: ["error": "Data source not found", "code": "DATASOURCE_NOT_FOUND", "details": ["datasourceId": "x"]])
        #expect(error == DataSourceError.notFound("x"))
        #expect(DataSourceError(claroBody: ["code": "SOMETHING_ELSE"]) == nil)
        #expect(DataSourceError(claroBody: ["message": "Not Found"]) == nil)
    }
}
