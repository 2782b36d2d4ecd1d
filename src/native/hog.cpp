// edge-fer's C++ glue: dlib's HOG face detector built from its serialised form.
//
// dlib builds its frontal face detector (get_frontal_face_detector) by base64-decoding and
// decompressing a string compiled into it, which takes 0.6-1 s, most of edge-fer's start-up
// with HOG; deserialising the same detector from the decompressed bytes takes milliseconds.
// edge-fer ships those bytes (models/dlib-hog-frontal/, written by edge_fer_hog_export) and
// loads them here. Detection is dlib's own call on the same image type as the
// dlib-face-recognition crate uses, so the boxes are the same. No exception leaves this file.

#include <dlib/image_processing/frontal_face_detector.h>
#include <dlib/matrix.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

namespace {
void set_error(char* err, size_t err_len, const char* what) {
    if (err_len > 0) std::snprintf(err, err_len, "%s", what);
}
}  // namespace

extern "C" {

// dlib's built-in detector in dlib's serialisation, in a malloc'd buffer at *out (free it with
// edge_fer_native_free); returns its length, 0 on failure.
size_t edge_fer_hog_export(char** out) {
    try {
        const std::string bytes = dlib::get_serialized_frontal_faces();
        *out = static_cast<char*>(std::malloc(bytes.size()));
        if (*out == nullptr) return 0;
        std::memcpy(*out, bytes.data(), bytes.size());
        return bytes.size();
    } catch (...) {
        return 0;
    }
}

void edge_fer_native_free(void* p) { std::free(p); }

// A detector deserialised from len bytes; null with a message in err when they are not one.
void* edge_fer_hog_load(const char* bytes, size_t len, char* err, size_t err_len) {
    try {
        std::istringstream in(std::string(bytes, len));
        auto* detector = new dlib::frontal_face_detector();
        try {
            dlib::deserialize(*detector, in);
        } catch (...) {
            delete detector;
            throw;
        }
        if (detector->num_detectors() == 0) {
            delete detector;
            set_error(err, err_len, "the file holds no detector");
            return nullptr;
        }
        return detector;
    } catch (const std::exception& e) {
        set_error(err, err_len, e.what());
    } catch (...) {
        set_error(err, err_len, "unknown error");
    }
    return nullptr;
}

void edge_fer_hog_free(void* detector) { delete static_cast<dlib::frontal_face_detector*>(detector); }

// Faces in a packed RGB8 frame of width x height: up to max boxes written to out as (left, top,
// right, bottom), dlib's inclusive corners; returns how many dlib found (which may be more than
// max), or -1 on failure. Not reentrant for one detector: dlib's detector keeps scratch state.
long long edge_fer_hog_detect(void* detector, const unsigned char* rgb, size_t width, size_t height,
                              long long* out, size_t max) {
    try {
        dlib::matrix<dlib::rgb_pixel> image(static_cast<long>(height), static_cast<long>(width));
        for (size_t y = 0; y < height; ++y) {
            for (size_t x = 0; x < width; ++x) {
                const unsigned char* p = rgb + 3 * (y * width + x);
                image(static_cast<long>(y), static_cast<long>(x)) = dlib::rgb_pixel(p[0], p[1], p[2]);
            }
        }
        const std::vector<dlib::rectangle> found =
            (*static_cast<dlib::frontal_face_detector*>(detector))(image);
        for (size_t i = 0; i < found.size() && i < max; ++i) {
            out[4 * i + 0] = found[i].left();
            out[4 * i + 1] = found[i].top();
            out[4 * i + 2] = found[i].right();
            out[4 * i + 3] = found[i].bottom();
        }
        return static_cast<long long>(found.size());
    } catch (...) {
        return -1;
    }
}

}  // extern "C"
