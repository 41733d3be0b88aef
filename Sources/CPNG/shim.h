#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

/* libpng reports a failure by calling its error callback, which must not return (libpng aborts
   if it does). Swift cannot call setjmp, so the few libpng calls that can fail run inside the
   functions below: each sets the jump target, calls libpng and returns 0 on failure with the
   message in the source. Only PNGDecoder.swift calls them; the reader allocates no pixels. */

typedef struct ckpt_png_source {
    const unsigned char *data;
    size_t size;
    size_t offset;
    char message[200];
} ckpt_png_source;

static void ckpt_png_on_error(png_structp png, png_const_charp message) {
    ckpt_png_source *source = (ckpt_png_source *)png_get_error_ptr(png);
    if (source != NULL) {
        strncpy(source->message, message != NULL ? message : "libpng error", sizeof source->message - 1);
        source->message[sizeof source->message - 1] = 0;
    }
    png_longjmp(png, 1);
}

static void ckpt_png_on_warning(png_structp png, png_const_charp message) {
    (void)png;
    (void)message; /* warnings (ancillary chunk CRCs, unknown sRGB profiles) do not change pixels */
}

static void ckpt_png_read_bytes(png_structp png, png_bytep out, size_t count) {
    ckpt_png_source *source = (ckpt_png_source *)png_get_io_ptr(png);
    if (source == NULL || count > source->size - source->offset) {
        png_error(png, "unexpected end of file");
    }
    memcpy(out, source->data + source->offset, count);
    source->offset += count;
}

/* A reader over the bytes of source, or NULL when libpng cannot allocate one. */
static inline png_structp ckpt_png_create(ckpt_png_source *source) {
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, source, ckpt_png_on_error, ckpt_png_on_warning);
    if (png != NULL) {
        png_set_read_fn(png, source, ckpt_png_read_bytes);
    }
    return png;
}

/* The signature and every chunk before the first IDAT. */
static inline int ckpt_png_read_info(png_structp png, png_infop info) {
    if (setjmp(png_jmpbuf(png))) {
        return 0;
    }
    png_read_info(png, info);
    return 1;
}

/* Asks for samples below 8 bits one to a byte (values kept, not scaled) and for the seven
   Adam7 passes to be merged, then updates info so png_get_rowbytes gives the row size. */
static inline int ckpt_png_prepare(png_structp png, png_infop info) {
    if (setjmp(png_jmpbuf(png))) {
        return 0;
    }
    png_set_packing(png);
    (void)png_set_interlace_handling(png);
    png_read_update_info(png, info);
    return 1;
}

/* Every row, into rows[0 ..< height], each png_get_rowbytes long. */
static inline int ckpt_png_read_image(png_structp png, png_bytepp rows) {
    if (setjmp(png_jmpbuf(png))) {
        return 0;
    }
    png_read_image(png, rows);
    return 1;
}

static inline void ckpt_png_destroy(png_structp png, png_infop info) {
    png_destroy_read_struct(&png, info != NULL ? &info : NULL, NULL);
}

/* Writing: an 8-bit grey image into a growing memory buffer, so the caller decides where the
   bytes go (a temporary file renamed into place). Only PNGDecoder.swift calls these. */

typedef struct ckpt_png_sink {
    unsigned char *data;
    size_t size;
    size_t capacity;
    char message[200];
} ckpt_png_sink;

static void ckpt_png_on_write_error(png_structp png, png_const_charp message) {
    ckpt_png_sink *sink = (ckpt_png_sink *)png_get_error_ptr(png);
    if (sink != NULL) {
        strncpy(sink->message, message != NULL ? message : "libpng error", sizeof sink->message - 1);
        sink->message[sizeof sink->message - 1] = 0;
    }
    png_longjmp(png, 1);
}

static void ckpt_png_write_bytes(png_structp png, png_bytep bytes, size_t count) {
    ckpt_png_sink *sink = (ckpt_png_sink *)png_get_io_ptr(png);
    if (sink == NULL || count > ((size_t)-1) / 2 - sink->size) {
        png_error(png, "png too large");
    }
    if (sink->size + count > sink->capacity) {
        size_t capacity = sink->capacity < 4096 ? 4096 : sink->capacity;
        while (capacity < sink->size + count) {
            capacity *= 2;
        }
        unsigned char *grown = (unsigned char *)realloc(sink->data, capacity);
        if (grown == NULL) {
            png_error(png, "out of memory");
        }
        sink->data = grown;
        sink->capacity = capacity;
    }
    memcpy(sink->data + sink->size, bytes, count);
    sink->size += count;
}

static void ckpt_png_flush(png_structp png) {
    (void)png;
}

/* Encodes width x height grey bytes (rows of width bytes, top to bottom) as a non-interlaced
   8-bit grey PNG into sink (its data freed by ckpt_png_sink_free). Returns 0 on failure, the
   message in the sink. */
static inline int ckpt_png_write_grey8(ckpt_png_sink *sink, const unsigned char *pixels, png_uint_32 width, png_uint_32 height) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, sink, ckpt_png_on_write_error, ckpt_png_on_warning);
    if (png == NULL) {
        strncpy(sink->message, "cannot create a png writer", sizeof sink->message - 1);
        return 0;
    }
    png_infop info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_write_struct(&png, NULL);
        strncpy(sink->message, "cannot create a png writer", sizeof sink->message - 1);
        return 0;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return 0;
    }
    png_set_write_fn(png, sink, ckpt_png_write_bytes, ckpt_png_flush);
    png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (png_uint_32 y = 0; y < height; y++) {
        png_write_row(png, pixels + (size_t)y * width);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return 1;
}

static inline void ckpt_png_sink_free(ckpt_png_sink *sink) {
    free(sink->data);
    sink->data = NULL;
    sink->size = 0;
    sink->capacity = 0;
}
