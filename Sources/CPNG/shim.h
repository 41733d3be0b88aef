#include <png.h>
#include <setjmp.h>
#include <string.h>

/* libpng reports a failure by calling its error callback, which must not return (libpng aborts
   if it does). Swift cannot call setjmp, so the few libpng calls that can fail run inside the
   functions below: each sets the jump target, calls libpng and returns 0 on failure with the
   message in the source. Only PNGDecoder.swift calls them; nothing here allocates pixels. */

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
