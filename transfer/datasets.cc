#include "transfer/datasets.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "ssl/core/file.h"
#include "ssl/core/status_macros.h"
#include "ssl/data/image.h"
#include "ssl/data/image_io.h"

namespace ssl::transfer {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------
// A small reader for Python pickles (protocols 0-4, binary opcodes): enough for dicts,
// lists, tuples, numbers, strings and numpy arrays rebuilt by _reconstruct + BUILD, as
// CIFAR's batch files hold them. Objects are kept as calls (callable, args, state);
// nothing is executed.

struct PyValue;
using PyRef = std::shared_ptr<PyValue>;

struct PyValue {
  enum class Kind { kNone, kBool, kInt, kFloat, kBytes, kString, kList, kTuple, kDict, kGlobal,
                    kCall, kMark };
  Kind kind = Kind::kNone;
  int64_t integer = 0;
  double real = 0;
  std::string text;            // bytes, str (UTF-8) or "module name" of a global
  std::vector<PyRef> items;    // list / tuple items; dict keys and values alternate
  PyRef callable, args, state;  // kCall
};

PyRef Make(PyValue::Kind kind) {
  auto value = std::make_shared<PyValue>();
  value->kind = kind;
  return value;
}

class PickleReader {
 public:
  PickleReader(const std::string& bytes, const std::string& name) : bytes_(bytes), name_(name) {}

  absl::StatusOr<PyRef> Read() {
    while (true) {
      if (pos_ >= bytes_.size()) return Error("ends before its STOP opcode");
      const uint8_t op = static_cast<uint8_t>(bytes_[pos_++]);
      switch (op) {
        case 0x80: SSL_RETURN_IF_ERROR(Skip(1)); break;   // PROTO
        case 0x95: SSL_RETURN_IF_ERROR(Skip(8)); break;   // FRAME
        case '.': {                                       // STOP
          if (stack_.size() != 1) return Error("stops with an unbalanced stack");
          return stack_.back();
        }
        case '}': stack_.push_back(Make(PyValue::Kind::kDict)); break;
        case ']': stack_.push_back(Make(PyValue::Kind::kList)); break;
        case ')': stack_.push_back(Make(PyValue::Kind::kTuple)); break;
        case '(': stack_.push_back(Make(PyValue::Kind::kMark)); break;
        case 'N': stack_.push_back(Make(PyValue::Kind::kNone)); break;
        case 0x88: case 0x89: {  // NEWTRUE / NEWFALSE
          PyRef value = Make(PyValue::Kind::kBool);
          value->integer = op == 0x88;
          stack_.push_back(value);
          break;
        }
        case 'K': SSL_RETURN_IF_ERROR(PushInt(1, false)); break;  // BININT1
        case 'M': SSL_RETURN_IF_ERROR(PushInt(2, false)); break;  // BININT2
        case 'J': SSL_RETURN_IF_ERROR(PushInt(4, true)); break;   // BININT
        case 0x8a: {                                              // LONG1
          SSL_ASSIGN_OR_RETURN(uint64_t n, Unsigned(1));
          if (n > 8) return Error("holds an integer wider than 64 bits");
          SSL_RETURN_IF_ERROR(PushInt(static_cast<int>(n), true));
          break;
        }
        case 'G': {  // BINFLOAT, big-endian
          SSL_ASSIGN_OR_RETURN(std::string raw, Take(8));
          std::reverse(raw.begin(), raw.end());
          PyRef value = Make(PyValue::Kind::kFloat);
          std::memcpy(&value->real, raw.data(), 8);
          stack_.push_back(value);
          break;
        }
        case 'U': SSL_RETURN_IF_ERROR(PushText(1, PyValue::Kind::kBytes)); break;  // SHORT_BINSTRING
        case 'T': SSL_RETURN_IF_ERROR(PushText(4, PyValue::Kind::kBytes)); break;  // BINSTRING
        case 'C': SSL_RETURN_IF_ERROR(PushText(1, PyValue::Kind::kBytes)); break;  // SHORT_BINBYTES
        case 'B': SSL_RETURN_IF_ERROR(PushText(4, PyValue::Kind::kBytes)); break;  // BINBYTES
        case 0x8e: SSL_RETURN_IF_ERROR(PushText(8, PyValue::Kind::kBytes)); break;  // BINBYTES8
        case 0x8c: SSL_RETURN_IF_ERROR(PushText(1, PyValue::Kind::kString)); break;  // SHORT_BINUNICODE
        case 'X': SSL_RETURN_IF_ERROR(PushText(4, PyValue::Kind::kString)); break;  // BINUNICODE
        case 0x8d: SSL_RETURN_IF_ERROR(PushText(8, PyValue::Kind::kString)); break;  // BINUNICODE8
        case 'q': SSL_RETURN_IF_ERROR(Put(1)); break;        // BINPUT
        case 'r': SSL_RETURN_IF_ERROR(Put(4)); break;        // LONG_BINPUT
        case 0x94: SSL_RETURN_IF_ERROR(Memoize()); break;    // MEMOIZE
        case 'h': SSL_RETURN_IF_ERROR(Get(1)); break;        // BINGET
        case 'j': SSL_RETURN_IF_ERROR(Get(4)); break;        // LONG_BINGET
        case 'a': {                                          // APPEND
          SSL_ASSIGN_OR_RETURN(PyRef item, Pop());
          SSL_ASSIGN_OR_RETURN(PyRef list, Top(PyValue::Kind::kList));
          list->items.push_back(item);
          break;
        }
        case 'e': {  // APPENDS
          SSL_ASSIGN_OR_RETURN(std::vector<PyRef> items, PopToMark());
          SSL_ASSIGN_OR_RETURN(PyRef list, Top(PyValue::Kind::kList));
          list->items.insert(list->items.end(), items.begin(), items.end());
          break;
        }
        case 's': {  // SETITEM
          SSL_ASSIGN_OR_RETURN(PyRef value, Pop());
          SSL_ASSIGN_OR_RETURN(PyRef key, Pop());
          SSL_ASSIGN_OR_RETURN(PyRef dict, Top(PyValue::Kind::kDict));
          dict->items.push_back(key);
          dict->items.push_back(value);
          break;
        }
        case 'u': {  // SETITEMS
          SSL_ASSIGN_OR_RETURN(std::vector<PyRef> items, PopToMark());
          if (items.size() % 2) return Error("has a SETITEMS with an odd number of items");
          SSL_ASSIGN_OR_RETURN(PyRef dict, Top(PyValue::Kind::kDict));
          dict->items.insert(dict->items.end(), items.begin(), items.end());
          break;
        }
        case 't': {  // TUPLE
          SSL_ASSIGN_OR_RETURN(std::vector<PyRef> items, PopToMark());
          PyRef tuple = Make(PyValue::Kind::kTuple);
          tuple->items = std::move(items);
          stack_.push_back(tuple);
          break;
        }
        case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
          const size_t n = op - 0x84;
          if (stack_.size() < n) return Error("has a TUPLE with too few items");
          PyRef tuple = Make(PyValue::Kind::kTuple);
          tuple->items.assign(stack_.end() - n, stack_.end());
          stack_.resize(stack_.size() - n);
          stack_.push_back(tuple);
          break;
        }
        case 'c': {  // GLOBAL module\nname\n
          SSL_ASSIGN_OR_RETURN(std::string module, Line());
          SSL_ASSIGN_OR_RETURN(std::string global, Line());
          PyRef value = Make(PyValue::Kind::kGlobal);
          value->text = module + " " + global;
          stack_.push_back(value);
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          SSL_ASSIGN_OR_RETURN(PyRef global, Pop());
          SSL_ASSIGN_OR_RETURN(PyRef module, Pop());
          PyRef value = Make(PyValue::Kind::kGlobal);
          value->text = module->text + " " + global->text;
          stack_.push_back(value);
          break;
        }
        case 'R': case 0x81: {  // REDUCE / NEWOBJ
          SSL_ASSIGN_OR_RETURN(PyRef args, Pop());
          SSL_ASSIGN_OR_RETURN(PyRef callable, Pop());
          stack_.push_back(Call(callable, args));
          break;
        }
        case 'b': {  // BUILD
          SSL_ASSIGN_OR_RETURN(PyRef state, Pop());
          SSL_ASSIGN_OR_RETURN(PyRef object, Top(PyValue::Kind::kCall));
          object->state = state;
          break;
        }
        default:
          return Error(absl::StrFormat("uses pickle opcode 0x%02x, which this reader does not know",
                                       op));
      }
    }
  }

 private:
  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(name_, " is not a readable Python pickle: it ", what, " (offset ", pos_, ")"));
  }
  absl::Status Skip(size_t n) { return Take(n).status(); }
  absl::StatusOr<std::string> Take(uint64_t n) {
    if (n > bytes_.size() - pos_) return Error("is truncated");
    std::string out = bytes_.substr(pos_, n);
    pos_ += n;
    return out;
  }
  absl::StatusOr<uint64_t> Unsigned(int n) {
    SSL_ASSIGN_OR_RETURN(std::string raw, Take(n));
    uint64_t value = 0;
    for (int i = n - 1; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(raw[i]);
    return value;
  }
  absl::Status PushInt(int n, bool is_signed) {
    SSL_ASSIGN_OR_RETURN(uint64_t raw, Unsigned(n));
    PyRef value = Make(PyValue::Kind::kInt);
    value->integer = static_cast<int64_t>(raw);
    if (is_signed && n < 8 && n > 0 && (raw >> (8 * n - 1)) & 1) {
      value->integer = static_cast<int64_t>(raw) - (int64_t{1} << (8 * n));
    }
    stack_.push_back(value);
    return absl::OkStatus();
  }
  absl::Status PushText(int length_bytes, PyValue::Kind kind) {
    SSL_ASSIGN_OR_RETURN(uint64_t length, Unsigned(length_bytes));
    PyRef value = Make(kind);
    SSL_ASSIGN_OR_RETURN(value->text, Take(length));
    stack_.push_back(value);
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> Line() {
    const size_t end = bytes_.find('\n', pos_);
    if (end == std::string::npos) return Error("is truncated in a GLOBAL");
    std::string line = bytes_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return line;
  }
  absl::Status Put(int n) {
    SSL_ASSIGN_OR_RETURN(uint64_t index, Unsigned(n));
    if (stack_.empty()) return Error("memoizes an empty stack");
    memo_[index] = stack_.back();
    return absl::OkStatus();
  }
  absl::Status Memoize() {
    if (stack_.empty()) return Error("memoizes an empty stack");
    memo_[memo_.size()] = stack_.back();
    return absl::OkStatus();
  }
  absl::Status Get(int n) {
    SSL_ASSIGN_OR_RETURN(uint64_t index, Unsigned(n));
    auto it = memo_.find(index);
    if (it == memo_.end()) return Error("refers to a memo entry it never stored");
    stack_.push_back(it->second);
    return absl::OkStatus();
  }
  absl::StatusOr<PyRef> Pop() {
    if (stack_.empty() || stack_.back()->kind == PyValue::Kind::kMark) {
      return Error("pops an empty stack");
    }
    PyRef value = stack_.back();
    stack_.pop_back();
    return value;
  }
  absl::StatusOr<PyRef> Top(PyValue::Kind kind) {
    if (stack_.empty() || stack_.back()->kind != kind) return Error("adds to the wrong kind of object");
    return stack_.back();
  }
  absl::StatusOr<std::vector<PyRef>> PopToMark() {
    auto mark = std::find_if(stack_.rbegin(), stack_.rend(),
                             [](const PyRef& v) { return v->kind == PyValue::Kind::kMark; });
    if (mark == stack_.rend()) return Error("has no MARK for a multi-item opcode");
    const auto first = mark.base();  // just after the mark
    std::vector<PyRef> items(first, stack_.end());
    stack_.erase(first - 1, stack_.end());
    return items;
  }
  // Python 3's protocol-2 pickles spell bytes as _codecs.encode(text, "latin1").
  static PyRef Call(const PyRef& callable, const PyRef& args) {
    if (callable->kind == PyValue::Kind::kGlobal && callable->text == "_codecs encode" &&
        args->items.size() == 2 && args->items[0]->kind == PyValue::Kind::kString) {
      PyRef bytes = Make(PyValue::Kind::kBytes);
      const std::string& utf8 = args->items[0]->text;
      for (size_t i = 0; i < utf8.size(); ++i) {
        const auto c = static_cast<uint8_t>(utf8[i]);
        if (c < 0x80) {
          bytes->text.push_back(static_cast<char>(c));
        } else if (i + 1 < utf8.size()) {  // two-byte UTF-8 for code points 0x80..0xff
          bytes->text.push_back(static_cast<char>(((c & 0x1f) << 6) | (utf8[++i] & 0x3f)));
        }
      }
      return bytes;
    }
    PyRef call = Make(PyValue::Kind::kCall);
    call->callable = callable;
    call->args = args;
    return call;
  }

  const std::string& bytes_;
  const std::string name_;
  size_t pos_ = 0;
  std::vector<PyRef> stack_;
  std::map<uint64_t, PyRef> memo_;
};

// dict[key] for str or bytes keys (Python 2's CIFAR files use bytes).
PyRef DictGet(const PyRef& dict, const std::string& key) {
  if (!dict || dict->kind != PyValue::Kind::kDict) return nullptr;
  for (size_t i = 0; i + 1 < dict->items.size(); i += 2) {
    const PyRef& k = dict->items[i];
    if ((k->kind == PyValue::Kind::kBytes || k->kind == PyValue::Kind::kString) && k->text == key) {
      return dict->items[i + 1];
    }
  }
  return nullptr;
}

// A numpy uint8 array: _reconstruct(...) with state (version, shape, dtype, fortran, data).
absl::StatusOr<std::pair<std::vector<int64_t>, const std::string*>> NumpyBytes(
    const PyRef& array, const std::string& name) {
  const auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": 'data' is not a uint8 numpy array (",
                                                   why, ")"));
  };
  if (!array || array->kind != PyValue::Kind::kCall || !array->state ||
      array->state->kind != PyValue::Kind::kTuple || array->state->items.size() != 5) {
    return bad("no array state");
  }
  const auto& state = array->state->items;
  if (state[1]->kind != PyValue::Kind::kTuple || state[4]->kind != PyValue::Kind::kBytes) {
    return bad("no shape or raw data");
  }
  std::vector<int64_t> shape;
  int64_t count = 1;
  for (const PyRef& d : state[1]->items) {
    if (d->kind != PyValue::Kind::kInt || d->integer < 0) return bad("bad shape");
    shape.push_back(d->integer);
    count *= d->integer;
  }
  if (static_cast<int64_t>(state[4]->text.size()) != count) return bad("size is not 1 byte per item");
  return std::make_pair(shape, &state[4]->text);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) { return ssl::ReadFileBytes(path); }

// ---------------------------------------------------------------------------------
// MATLAB v5.

enum MatType : uint32_t {
  kInt8 = 1, kUint8 = 2, kInt16 = 3, kUint16 = 4, kInt32 = 5, kUint32 = 6, kSingle = 7,
  kDouble = 9, kInt64 = 12, kUint64 = 13, kMatrix = 14, kCompressed = 15,
};

constexpr size_t kMaxInflated = size_t{1} << 30;

absl::StatusOr<std::string> Inflate(const std::string& compressed, const std::string& name) {
  z_stream stream{};
  if (inflateInit(&stream) != Z_OK) return absl::InternalError("zlib inflateInit failed");
  std::string out;
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  stream.avail_in = static_cast<uInt>(compressed.size());
  int code = Z_OK;
  while (code == Z_OK) {
    if (out.size() >= kMaxInflated) {
      inflateEnd(&stream);
      return absl::InvalidArgumentError(absl::StrCat(name, ": a compressed element inflates past 1 GiB"));
    }
    const size_t old = out.size();
    out.resize(old + (size_t{1} << 16));
    stream.next_out = reinterpret_cast<Bytef*>(&out[old]);
    stream.avail_out = 1 << 16;
    code = inflate(&stream, Z_NO_FLUSH);
    out.resize(old + (size_t{1} << 16) - stream.avail_out);
  }
  inflateEnd(&stream);
  if (code != Z_STREAM_END) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": a compressed element is corrupt"));
  }
  return out;
}

struct MatElement {
  uint32_t type = 0;
  std::string data;
};

// Reads the elements of `bytes` from `pos` (tag: type, size; small elements pack both
// into 4 bytes; data padded to 8 bytes).
absl::StatusOr<std::vector<MatElement>> MatElements(const std::string& bytes, size_t pos,
                                                    const std::string& name) {
  std::vector<MatElement> elements;
  const auto u32 = [&](size_t at) {
    uint32_t v;
    std::memcpy(&v, bytes.data() + at, 4);
    return v;
  };
  while (pos + 8 <= bytes.size()) {
    MatElement element;
    uint32_t first = u32(pos);
    size_t size, header;
    if (first >> 16) {  // small data element
      element.type = first & 0xffff;
      size = first >> 16;
      header = 4;
      if (size > 4) return absl::InvalidArgumentError(absl::StrCat(name, ": bad small element"));
    } else {
      element.type = first;
      size = u32(pos + 4);
      header = 8;
    }
    if (size > bytes.size() - pos - header) {
      return absl::InvalidArgumentError(absl::StrCat(name, " is truncated (a MATLAB element of ",
                                                     size, " bytes at offset ", pos, ")"));
    }
    element.data = bytes.substr(pos + header, size);
    pos += header + size;
    if (element.type != kCompressed) pos = (pos + 7) / 8 * 8;
    elements.push_back(std::move(element));
    if (header == 4) pos = (pos + 7) / 8 * 8;
  }
  return elements;
}

absl::StatusOr<std::vector<double>> MatNumbers(const MatElement& e, const std::string& name) {
  size_t width;
  switch (e.type) {
    case kInt8: case kUint8: width = 1; break;
    case kInt16: case kUint16: width = 2; break;
    case kInt32: case kUint32: case kSingle: width = 4; break;
    case kDouble: case kInt64: case kUint64: width = 8; break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": a variable's data has MATLAB type ", e.type, ", not a number"));
  }
  std::vector<double> values(e.data.size() / width);
  for (size_t i = 0; i < values.size(); ++i) {
    const char* p = e.data.data() + i * width;
    switch (e.type) {
      case kInt8: values[i] = static_cast<int8_t>(*p); break;
      case kUint8: values[i] = static_cast<uint8_t>(*p); break;
      case kInt16: { int16_t v; std::memcpy(&v, p, 2); values[i] = v; break; }
      case kUint16: { uint16_t v; std::memcpy(&v, p, 2); values[i] = v; break; }
      case kInt32: { int32_t v; std::memcpy(&v, p, 4); values[i] = v; break; }
      case kUint32: { uint32_t v; std::memcpy(&v, p, 4); values[i] = v; break; }
      case kSingle: { float v; std::memcpy(&v, p, 4); values[i] = v; break; }
      case kDouble: { double v; std::memcpy(&v, p, 8); values[i] = v; break; }
      case kInt64: { int64_t v; std::memcpy(&v, p, 8); values[i] = static_cast<double>(v); break; }
      case kUint64: { uint64_t v; std::memcpy(&v, p, 8); values[i] = static_cast<double>(v); break; }
    }
  }
  return values;
}

// ---------------------------------------------------------------------------------
// Datasets.

absl::Status CheckExists(const std::string& path, const std::string& format) {
  if (!fs::exists(path)) {
    return absl::NotFoundError(absl::StrCat(format, ": ", path, " does not exist"));
  }
  return absl::OkStatus();
}

#ifdef SSL_NO_OPENCV
// The CIFAR cache holds PNG files, which the JPEG-only build (SSL_NO_OPENCV: the GPU
// machine's CMake build) can neither write nor read.
absl::StatusOr<DatasetSplits> OpenCifar(const DatasetOptions& options, bool hundred) {
  return absl::UnimplementedError(
      absl::StrCat(hundred ? "cifar100" : "cifar10",
                   " needs the OpenCV build: this one reads and writes JPEG only (SSL_NO_OPENCV)"));
}
#else
// CIFAR batches -> <cache>/<split>/<index>_<name>/<n>.png, once (a marker file says done).
absl::StatusOr<DatasetSplits> OpenCifar(const DatasetOptions& options, bool hundred) {
  const std::string format = hundred ? "cifar100" : "cifar10";
  const std::string meta = options.root + (hundred ? "/meta" : "/batches.meta");
  SSL_RETURN_IF_ERROR(CheckExists(meta, format));
  SSL_ASSIGN_OR_RETURN(std::string meta_bytes, ReadFile(meta));
  SSL_ASSIGN_OR_RETURN(std::vector<std::string> names, ParseCifarLabelNames(meta_bytes, meta));
  std::vector<std::string> classes;
  for (size_t i = 0; i < names.size(); ++i) {
    classes.push_back(absl::StrFormat("%03d_%s", i, names[i]));
  }
  const std::vector<std::pair<std::string, std::vector<std::string>>> splits = {
      {"train", hundred ? std::vector<std::string>{"train"}
                        : std::vector<std::string>{"data_batch_1", "data_batch_2", "data_batch_3",
                                                   "data_batch_4", "data_batch_5"}},
      {"test", {hundred ? "test" : "test_batch"}}};
  if (options.cache_dir.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(format, " needs a cache dir for its images"));
  }
  const std::string cache = options.cache_dir + "/" + format;
  std::vector<data::ImageFolder> folders;
  for (const auto& [split, files] : splits) {
    const std::string dir = cache + "/" + split;
    const std::string done = dir + "/.complete";
    if (!fs::exists(done)) {
      std::error_code error;
      fs::remove_all(dir, error);
      for (const std::string& c : classes) fs::create_directories(dir + "/" + c, error);
      if (error) {
        return absl::PermissionDeniedError(
            absl::StrCat("cannot create ", dir, ": ", error.message()));
      }
      int64_t written = 0;
      for (const std::string& file : files) {
        const std::string path = options.root + "/" + file;
        SSL_RETURN_IF_ERROR(CheckExists(path, format));
        SSL_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
        SSL_ASSIGN_OR_RETURN(CifarBatch batch, ParseCifarBatch(bytes, path));
        for (int64_t n = 0; n < batch.count; ++n) {
          const int label = batch.labels[n];
          if (label < 0 || label >= static_cast<int>(classes.size())) {
            return absl::InvalidArgumentError(absl::StrCat(path, ": label ", label, " of image ", n,
                                                           " is not one of the ", classes.size(),
                                                           " classes of ", meta));
          }
          data::Image image(32, 32);
          const uint8_t* planes = batch.pixels.data() + n * 3072;
          for (int p = 0; p < 1024; ++p) {
            for (int c = 0; c < 3; ++c) image.pixels[p * 3 + c] = planes[c * 1024 + p];
          }
          SSL_RETURN_IF_ERROR(ssl::WriteFileAtomically(
              absl::StrFormat("%s/%s/%06d.png", dir, classes[label], written++),
              data::EncodePng(image)));
        }
      }
      SSL_RETURN_IF_ERROR(ssl::WriteFileAtomically(done, absl::StrCat(written, "\n")));
    }
    // Classes without images (a partial test file) are listed by the meta file anyway.
    std::vector<data::Sample> samples;
    for (size_t c = 0; c < classes.size(); ++c) {
      std::vector<std::string> paths;
      for (const auto& entry : fs::directory_iterator(dir + "/" + classes[c])) {
        paths.push_back(entry.path().string());
      }
      std::sort(paths.begin(), paths.end());
      for (const std::string& path : paths) samples.push_back({path, static_cast<int>(c)});
    }
    SSL_ASSIGN_OR_RETURN(data::ImageFolder folder,
                         data::ImageFolder::FromSamples(dir, classes, std::move(samples)));
    folders.push_back(std::move(folder));
  }
  return DatasetSplits{std::move(folders[0]), std::move(folders[1])};
}
#endif  // SSL_NO_OPENCV

absl::StatusOr<DatasetSplits> OpenFlowers(const DatasetOptions& options) {
  const std::string labels_path = options.root + "/imagelabels.mat";
  const std::string setid_path = options.root + "/setid.mat";
  SSL_RETURN_IF_ERROR(CheckExists(labels_path, "flowers102"));
  SSL_RETURN_IF_ERROR(CheckExists(setid_path, "flowers102"));
  SSL_ASSIGN_OR_RETURN(std::string labels_bytes, ReadFile(labels_path));
  SSL_ASSIGN_OR_RETURN(std::string setid_bytes, ReadFile(setid_path));
  SSL_ASSIGN_OR_RETURN(auto labels_mat, ParseMatV5(labels_bytes, labels_path));
  SSL_ASSIGN_OR_RETURN(auto setid_mat, ParseMatV5(setid_bytes, setid_path));
  if (!labels_mat.count("labels")) {
    return absl::InvalidArgumentError(absl::StrCat(labels_path, " has no variable 'labels'"));
  }
  for (const char* key : {"trnid", "valid", "tstid"}) {
    if (!setid_mat.count(key)) {
      return absl::InvalidArgumentError(absl::StrCat(setid_path, " has no variable '", key, "'"));
    }
  }
  const std::vector<double>& labels = labels_mat["labels"];
  int max_label = 0;
  for (double l : labels) max_label = std::max(max_label, static_cast<int>(l));
  std::vector<std::string> classes;
  for (int c = 1; c <= max_label; ++c) classes.push_back(absl::StrFormat("class_%03d", c));
  const auto split = [&](std::vector<std::string> keys,
                         const std::string& label) -> absl::StatusOr<data::ImageFolder> {
    std::vector<data::Sample> samples;
    for (const std::string& key : keys) {
      for (double id : setid_mat[key]) {
        const auto index = static_cast<int64_t>(id);
        if (index < 1 || index > static_cast<int64_t>(labels.size())) {
          return absl::InvalidArgumentError(absl::StrCat(setid_path, ": image id ", index, " in '",
                                                         key, "' has no label in ", labels_path));
        }
        samples.push_back({absl::StrFormat("%s/jpg/image_%05d.jpg", options.root, index),
                           static_cast<int>(labels[index - 1]) - 1});
      }
    }
    return data::ImageFolder::FromSamples(options.root + " (" + label + ")", classes,
                                          std::move(samples));
  };
  SSL_ASSIGN_OR_RETURN(data::ImageFolder train, split({"trnid", "valid"}, "trnid + valid"));
  SSL_ASSIGN_OR_RETURN(data::ImageFolder test, split({"tstid"}, "tstid"));
  return DatasetSplits{std::move(train), std::move(test)};
}

absl::StatusOr<DatasetSplits> OpenPets(const DatasetOptions& options) {
  std::map<int, std::string> class_names;
  std::vector<std::vector<std::pair<std::string, int>>> lists(2);
  const char* files[2] = {"trainval.txt", "test.txt"};
  for (int s = 0; s < 2; ++s) {
    const std::string path = options.root + "/annotations/" + files[s];
    SSL_RETURN_IF_ERROR(CheckExists(path, "pets"));
    SSL_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
    int line_number = 0;
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      ++line_number;
      if (line.empty() || line[0] == '#') continue;
      std::istringstream in{std::string(line)};
      std::string name;
      int class_id = 0;
      if (!(in >> name >> class_id) || class_id < 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, " line ", line_number, ": expected \"<image> <class id from 1> ...\", got \"",
            line, "\""));
      }
      const size_t underscore = name.rfind('_');
      class_names[class_id - 1] = name.substr(0, underscore);
      lists[s].emplace_back(name, class_id - 1);
    }
  }
  std::vector<std::string> classes;
  for (const auto& [id, name] : class_names) {
    if (id != static_cast<int>(classes.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat(options.root, "/annotations: class ids are not 1..", class_names.size()));
    }
    classes.push_back(name);
  }
  std::vector<data::ImageFolder> folders;
  for (int s = 0; s < 2; ++s) {
    std::vector<data::Sample> samples;
    for (const auto& [name, label] : lists[s]) {
      samples.push_back({options.root + "/images/" + name + ".jpg", label});
    }
    SSL_ASSIGN_OR_RETURN(data::ImageFolder folder,
                         data::ImageFolder::FromSamples(options.root + " (" + files[s] + ")",
                                                        classes, std::move(samples)));
    folders.push_back(std::move(folder));
  }
  return DatasetSplits{std::move(folders[0]), std::move(folders[1])};
}

}  // namespace

std::vector<std::string> TransferFormats() {
  return {"imagefolder", "cifar10", "cifar100", "flowers102", "pets"};
}

absl::StatusOr<CifarBatch> ParseCifarBatch(const std::string& bytes, const std::string& name) {
  SSL_ASSIGN_OR_RETURN(PyRef root, PickleReader(bytes, name).Read());
  const PyRef data = DictGet(root, "data");
  PyRef labels = DictGet(root, "labels");
  if (!labels) labels = DictGet(root, "fine_labels");
  if (!data || !labels || labels->kind != PyValue::Kind::kList) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, " is not a CIFAR batch: no 'data' array and 'labels' (or 'fine_labels') list"));
  }
  SSL_ASSIGN_OR_RETURN(auto array, NumpyBytes(data, name));
  const auto& [shape, raw] = array;
  if (shape.size() != 2 || shape[1] != 3072) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": 'data' must be N x 3072 (32 x 32 RGB planes)"));
  }
  if (static_cast<int64_t>(labels->items.size()) != shape[0]) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", shape[0], " images but ",
                                                   labels->items.size(), " labels"));
  }
  CifarBatch batch;
  batch.count = shape[0];
  batch.pixels.assign(raw->begin(), raw->end());
  for (const PyRef& label : labels->items) {
    if (label->kind != PyValue::Kind::kInt) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": a label is not an integer"));
    }
    batch.labels.push_back(static_cast<int>(label->integer));
  }
  return batch;
}

absl::StatusOr<std::vector<std::string>> ParseCifarLabelNames(const std::string& bytes,
                                                              const std::string& name) {
  SSL_ASSIGN_OR_RETURN(PyRef root, PickleReader(bytes, name).Read());
  PyRef names = DictGet(root, "label_names");
  if (!names) names = DictGet(root, "fine_label_names");
  if (!names || names->kind != PyValue::Kind::kList || names->items.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " has no 'label_names' (or 'fine_label_names') list"));
  }
  std::vector<std::string> out;
  for (const PyRef& n : names->items) {
    if (n->kind != PyValue::Kind::kBytes && n->kind != PyValue::Kind::kString) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": a label name is not a string"));
    }
    std::string clean;
    for (char c : n->text) clean.push_back(std::isalnum(static_cast<unsigned char>(c)) ? c : '_');
    out.push_back(clean);
  }
  return out;
}

absl::StatusOr<std::map<std::string, std::vector<double>>> ParseMatV5(const std::string& bytes,
                                                                      const std::string& name) {
  if (bytes.size() < 128 || bytes.compare(0, 6, "MATLAB") != 0 || bytes[126] != 'I' ||
      bytes[127] != 'M') {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " is not a little-endian MATLAB 5.0 .mat file"));
  }
  SSL_ASSIGN_OR_RETURN(std::vector<MatElement> top, MatElements(bytes, 128, name));
  std::map<std::string, std::vector<double>> variables;
  for (MatElement& element : top) {
    if (element.type == kCompressed) {
      SSL_ASSIGN_OR_RETURN(std::string inflated, Inflate(element.data, name));
      SSL_ASSIGN_OR_RETURN(std::vector<MatElement> inner, MatElements(inflated, 0, name));
      if (inner.size() != 1) continue;
      element = std::move(inner[0]);
    }
    if (element.type != kMatrix) continue;
    // Array flags, dimensions, name, real part.
    SSL_ASSIGN_OR_RETURN(std::vector<MatElement> parts, MatElements(element.data, 0, name));
    if (parts.size() < 4) continue;
    const uint8_t array_class = parts[0].data.empty() ? 0 : static_cast<uint8_t>(parts[0].data[0]);
    if (array_class < 6 || array_class > 15) continue;  // numeric classes only
    SSL_ASSIGN_OR_RETURN(std::vector<double> values, MatNumbers(parts[3], name));
    variables[parts[2].data] = std::move(values);
  }
  return variables;
}

absl::StatusOr<DatasetSplits> OpenTransferDataset(const DatasetOptions& options) {
  if (options.format == "imagefolder") {
    SSL_ASSIGN_OR_RETURN(data::ImageFolder train,
                         data::ImageFolder::Open(options.root + "/" + options.train_split));
    SSL_ASSIGN_OR_RETURN(data::ImageFolder val,
                         data::ImageFolder::Open(options.root + "/" + options.val_split));
    if (train.classes() != val.classes()) {
      return absl::InvalidArgumentError(absl::StrCat(
          options.root, ": the ", options.train_split, " and ", options.val_split,
          " splits have different classes"));
    }
    return DatasetSplits{std::move(train), std::move(val)};
  }
  if (options.format == "cifar10" || options.format == "cifar100") {
    return OpenCifar(options, options.format == "cifar100");
  }
  if (options.format == "flowers102") return OpenFlowers(options);
  if (options.format == "pets") return OpenPets(options);
  return absl::InvalidArgumentError(absl::StrCat("unknown dataset format \"", options.format,
                                                 "\"; known: ", absl::StrJoin(TransferFormats(), ", ")));
}

}  // namespace ssl::transfer
