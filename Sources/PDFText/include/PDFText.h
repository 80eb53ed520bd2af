#ifndef PDFTEXT_H
#define PDFTEXT_H

// A small C interface over poppler's C++ library: open a PDF, and read each page's words with
// their boxes. C, so that Swift imports it without C++ interoperability.

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct PDFTextDocument PDFTextDocument;

typedef enum {
    PDFTextOpened = 0,
    /// poppler could not parse the file as a PDF (damaged, not a PDF).
    PDFTextUnreadable = 1,
    /// The document is encrypted with a user password.
    PDFTextLocked = 2,
    /// Out of memory or another failure inside poppler.
    PDFTextFailed = 3,
} PDFTextOpenStatus;

/// One word on a page: its box in points, origin at the page's top-left corner, y downwards,
/// and its UTF-8 text as a range of the page's text buffer.
typedef struct {
    double x0, y0, x1, y1;
    size_t textStart, textLength;
} PDFTextWord;

/// Opens the PDF at `path`. Silences poppler's diagnostics (they would go to stderr).
PDFTextOpenStatus pdftext_open(const char *path, PDFTextDocument **document);

int pdftext_page_count(const PDFTextDocument *document);

/// Reads page `index` (0-based): its words and their text (valid until the next call or the
/// close), and the page's size in points. Returns the number of words, or -1 on failure.
long pdftext_page_words(PDFTextDocument *document, int index, const PDFTextWord **words, const char **text, double *width, double *height);

void pdftext_close(PDFTextDocument *document);

#ifdef __cplusplus
}
#endif

#endif
