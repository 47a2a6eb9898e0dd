import EdgetrailCore
import Foundation
import Testing

@Suite("Reading operators' text files")
struct TextFileTests {
    private func problem(_ bytes: [UInt8]) -> String? {
        do {
            _ = try TextFile.decode(bytes, fileName: "f", what: "the file")
            return nil
        } catch {
            return error.diagnostics.map(\.description).joined(separator: "\n")
        }
    }

    @Test("UTF-8 text is returned as it is, accents included")
    func utf8() throws {
        #expect(try TextFile.decode(Array("Zürich\n".utf8), fileName: "f", what: "the file") == "Zürich\n")
    }

    @Test("the first bad byte is located by line and by column in characters, not bytes")
    func located() {
        #expect(problem(Array("ok\nZür".utf8) + [0xFC]) == "f:2:4: cannot read the file: byte 0xFC is not UTF-8 text; save the file as UTF-8")
        #expect(problem([0x80]) == "f:1:1: cannot read the file: byte 0x80 is not UTF-8 text; save the file as UTF-8")
    }

    @Test("a multi-byte sequence cut short is located at its first byte")
    func truncatedSequence() {
        #expect(problem(Array("ab".utf8) + [0xE2, 0x82, 0x41]) == "f:1:3: cannot read the file: byte 0xE2 is not UTF-8 text; save the file as UTF-8")
    }

    @Test("a missing file and a folder say so")
    func missingAndFolder() {
        func readProblem(_ path: String) -> String? {
            do {
                _ = try TextFile.read(path, what: "the file")
                return nil
            } catch {
                return error.diagnostics.first?.message
            }
        }
        #expect(readProblem("/nonexistent/x") == "cannot read the file: no such file")
        #expect(readProblem(FileManager.default.temporaryDirectory.path) == "cannot read the file: it is a folder, not a file")
    }
}
