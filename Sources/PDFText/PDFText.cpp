#include "PDFText.h"

#include <poppler-document.h>
#include <poppler-global.h>
#include <poppler-page.h>

#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

struct PDFTextDocument {
    std::unique_ptr<poppler::document> document;
    std::vector<PDFTextWord> words;
    std::string text;
};

namespace {
// poppler reports syntax errors of damaged files on stderr by default; the agent reports them
// through the data source's status instead.
void ignore_diagnostic(const std::string &, void *) {}

void silence_poppler() {
    static std::once_flag once;
    std::call_once(once, [] { poppler::set_debug_error_function(ignore_diagnostic, nullptr); });
}
}

extern "C" PDFTextOpenStatus pdftext_open(const char *path, PDFTextDocument **document) {
    *document = nullptr;
    try {
        silence_poppler();
        std::unique_ptr<poppler::document> opened(poppler::document::load_from_file(path));
        if (!opened) return PDFTextUnreadable;
        if (opened->is_locked()) return PDFTextLocked;
        auto result = new PDFTextDocument();
        result->document = std::move(opened);
        *document = result;
        return PDFTextOpened;
    } catch (...) {
        return PDFTextFailed;
    }
}

extern "C" int pdftext_page_count(const PDFTextDocument *document) { return document->document->pages(); }

extern "C" long pdftext_page_words(PDFTextDocument *document, int index, const PDFTextWord **words, const char **text, double *width, double *height) {
    try {
        document->words.clear();
        document->text.clear();
        std::unique_ptr<poppler::page> page(document->document->create_page(index));
        if (!page) return -1;
        poppler::rectf size = page->page_rect(poppler::media_box);
        *width = size.width();
        *height = size.height();
        for (const poppler::text_box &box : page->text_list()) {
            poppler::byte_array utf8 = box.text().to_utf8();
            if (utf8.empty()) continue;
            poppler::rectf r = box.bbox();
            PDFTextWord word = {r.left(), r.top(), r.right(), r.bottom(), document->text.size(), utf8.size()};
            document->text.append(utf8.data(), utf8.size());
            document->words.push_back(word);
        }
        *words = document->words.data();
        *text = document->text.data();
        return static_cast<long>(document->words.size());
    } catch (...) {
        return -1;
    }
}

extern "C" void pdftext_close(PDFTextDocument *document) { delete document; }
