#include "ssl/train/torch_file.h"

#include <ATen/core/Dict.h>
#include <ATen/core/List.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>
#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace ssl::train {
namespace {

// A Python value while unpickling. Lists and dicts are shared (the memo refers to them
// and later opcodes mutate them), hence the shared_ptr.
struct Value;
using Ref = std::shared_ptr<Value>;
struct Value {
  enum class Kind { kNone, kBool, kInt, kFloat, kString, kBytes, kTuple, kList, kDict };
  enum class Special { kNone, kTensor, kStorage, kGlobal, kObject };
  Kind kind = Kind::kNone;
  Special special = Special::kNone;
  int64_t integer = 0;
  double number = 0;
  std::string text;        // string, bytes; a global's or an object's "module.name"
  std::vector<Ref> items;  // tuple, list; an object's arguments
  std::vector<std::pair<Ref, Ref>> entries;  // dict; an object's attributes
  at::Tensor tensor;                         // tensor; storage as a 1-D tensor
};

// Malformed input: becomes the one-sentence error of ParseTorchSave.
struct Malformed : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// TorchScript's typed containers (torch.jit._pickle.*, __torch__ classes), which only
// LibTorch's own unpickler rebuilds with their types.
struct LibTorchTyped : std::runtime_error {
  using std::runtime_error::runtime_error;
};

Ref Make(Value::Kind kind) {
  auto value = std::make_shared<Value>();
  value->kind = kind;
  return value;
}
Ref MakeSpecial(Value::Special special, std::string text = {}) {
  auto value = std::make_shared<Value>();
  value->special = special;
  value->text = std::move(text);
  return value;
}
Ref MakeInt(int64_t v) {
  Ref value = Make(Value::Kind::kInt);
  value->integer = v;
  return value;
}
Ref MakeString(std::string text, Value::Kind kind = Value::Kind::kString) {
  Ref value = Make(kind);
  value->text = std::move(text);
  return value;
}
Ref MakeTensor(at::Tensor tensor, Value::Special special = Value::Special::kTensor) {
  Ref value = MakeSpecial(special);
  value->tensor = std::move(tensor);
  return value;
}

bool IsTensor(const Ref& v) { return v->special == Value::Special::kTensor; }
int64_t AsInt(const Ref& v, const char* what) {
  if ((v->kind != Value::Kind::kInt && v->kind != Value::Kind::kBool) ||
      v->special != Value::Special::kNone) {
    throw Malformed(absl::StrCat(what, " is not an integer"));
  }
  return v->integer;
}
const std::vector<Ref>& AsSequence(const Ref& v, const char* what) {
  if (v->kind != Value::Kind::kTuple && v->kind != Value::Kind::kList) {
    throw Malformed(absl::StrCat(what, " is not a tuple"));
  }
  return v->items;
}
const std::string& AsString(const Ref& v, const char* what) {
  if (v->kind != Value::Kind::kString || v->special != Value::Special::kNone) {
    throw Malformed(absl::StrCat(what, " is not a string"));
  }
  return v->text;
}

std::optional<at::ScalarType> StorageDtype(const std::string& global) {
  static const std::map<std::string, at::ScalarType> kTypes = {
      {"torch.FloatStorage", at::kFloat},
      {"torch.DoubleStorage", at::kDouble},
      {"torch.HalfStorage", at::kHalf},
      {"torch.BFloat16Storage", at::kBFloat16},
      {"torch.LongStorage", at::kLong},
      {"torch.IntStorage", at::kInt},
      {"torch.ShortStorage", at::kShort},
      {"torch.CharStorage", at::kChar},
      {"torch.ByteStorage", at::kByte},
      {"torch.BoolStorage", at::kBool},
      {"torch.ComplexFloatStorage", at::kComplexFloat},
      {"torch.ComplexDoubleStorage", at::kComplexDouble}};
  auto it = kTypes.find(global);
  if (it == kTypes.end()) return std::nullopt;
  return it->second;
}

// Where storages' bytes come from: the zip's data/<key> records, or (legacy) filled in
// after the object's pickle.
class StorageSource {
 public:
  virtual ~StorageSource() = default;
  virtual at::Tensor Load(const std::string& key, at::ScalarType dtype, int64_t numel) = 0;
};

class Unpickler {
 public:
  Unpickler(std::string_view bytes, size_t position, StorageSource* storages)
      : bytes_(bytes), position_(position), storages_(storages) {}

  Ref Run() {
    while (true) {
      const uint8_t op = Byte();
      switch (op) {
        case 0x80:
          Byte();
          break;  // PROTO
        case 0x95:
          Take(8);
          break;  // FRAME
        case '.':
          return Pop();  // STOP
        case '(':
          marks_.push_back(stack_.size());
          break;  // MARK
        case '0':
          Pop();
          break;  // POP
        case '1':
          PopMark();
          break;  // POP_MARK
        case '2':
          Push(Top());
          break;  // DUP
        case 'N':
          Push(Make(Value::Kind::kNone));
          break;
        case 0x88:
        case 0x89: {  // NEWTRUE, NEWFALSE
          Ref b = Make(Value::Kind::kBool);
          b->integer = op == 0x88;
          Push(b);
          break;
        }
        case 'J':
          Push(MakeInt(static_cast<int32_t>(Little(4))));
          break;  // BININT
        case 'K':
          Push(MakeInt(Little(1)));
          break;  // BININT1
        case 'M':
          Push(MakeInt(Little(2)));
          break;  // BININT2
        case 0x8a:
          Push(Long(Little(1)));
          break;  // LONG1
        case 0x8b:
          Push(Long(Little(4)));
          break;  // LONG4
        case 'I':
        case 'L':
          Push(TextInt(Line(), op == 'I'));
          break;     // INT, LONG
        case 'G': {  // BINFLOAT
          uint64_t big = 0;
          for (unsigned char c : Take(8)) big = big << 8 | c;
          Ref f = Make(Value::Kind::kFloat);
          std::memcpy(&f->number, &big, 8);
          Push(f);
          break;
        }
        case 'F': {
          Ref f = Make(Value::Kind::kFloat);
          if (!absl::SimpleAtod(std::string(Line()), &f->number)) throw Malformed("bad FLOAT");
          Push(f);
          break;
        }
        case 'X':
          Push(MakeString(std::string(Take(Little(4)))));
          break;  // BINUNICODE
        case 0x8c:
          Push(MakeString(std::string(Take(Little(1)))));
          break;  // SHORT_BINUNICODE
        case 0x8d:
          Push(MakeString(std::string(Take(Little(8)))));
          break;  // BINUNICODE8
        case 'T':
          Push(MakeString(std::string(Take(Little(4)))));
          break;  // BINSTRING
        case 'U':
          Push(MakeString(std::string(Take(Little(1)))));
          break;  // SHORT_BINSTRING
        case 'B':
          Push(MakeString(std::string(Take(Little(4))), Value::Kind::kBytes));
          break;
        case 'C':
          Push(MakeString(std::string(Take(Little(1))), Value::Kind::kBytes));
          break;
        case 0x8e:
          Push(MakeString(std::string(Take(Little(8))), Value::Kind::kBytes));
          break;
        case ')':
          Push(Make(Value::Kind::kTuple));
          break;     // EMPTY_TUPLE
        case 't': {  // TUPLE
          Ref t = Make(Value::Kind::kTuple);
          t->items = PopMark();
          Push(t);
          break;
        }
        case 0x85:
        case 0x86:
        case 0x87: {  // TUPLE1..3
          const size_t n = op - 0x84;
          if (stack_.size() < n + Floor()) throw Malformed("stack underflow");
          Ref t = Make(Value::Kind::kTuple);
          t->items.assign(stack_.end() - n, stack_.end());
          stack_.resize(stack_.size() - n);
          Push(t);
          break;
        }
        case ']':
          Push(Make(Value::Kind::kList));
          break;     // EMPTY_LIST
        case 'l': {  // LIST
          Ref l = Make(Value::Kind::kList);
          l->items = PopMark();
          Push(l);
          break;
        }
        case 'a': {  // APPEND
          Ref item = Pop();
          List(Top())->items.push_back(item);
          break;
        }
        case 'e': {  // APPENDS
          std::vector<Ref> items = PopMark();
          Ref list = List(Top());
          list->items.insert(list->items.end(), items.begin(), items.end());
          break;
        }
        case 0x8f:
          Push(Make(Value::Kind::kList));
          break;      // EMPTY_SET (as a list)
        case 0x90: {  // ADDITEMS
          std::vector<Ref> items = PopMark();
          Ref set = List(Top());
          set->items.insert(set->items.end(), items.begin(), items.end());
          break;
        }
        case 0x91: {  // FROZENSET
          Ref l = Make(Value::Kind::kList);
          l->items = PopMark();
          Push(l);
          break;
        }
        case '}':
          Push(Make(Value::Kind::kDict));
          break;     // EMPTY_DICT
        case 'd': {  // DICT
          std::vector<Ref> items = PopMark();
          Ref d = Make(Value::Kind::kDict);
          SetItems(d, items);
          Push(d);
          break;
        }
        case 's': {  // SETITEM
          Ref value = Pop();
          Ref key = Pop();
          SetItems(Top(), {key, value});
          break;
        }
        case 'u': {  // SETITEMS
          std::vector<Ref> items = PopMark();
          SetItems(Top(), items);
          break;
        }
        case 'c': {  // GLOBAL
          std::string module(Line());
          std::string name(Line());
          Push(MakeSpecial(Value::Special::kGlobal, module + "." + name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          Ref name = Pop();
          Ref module = Pop();
          Push(MakeSpecial(Value::Special::kGlobal, AsString(module, "STACK_GLOBAL module") + "." +
                                                        AsString(name, "its name")));
          break;
        }
        case 'R': {  // REDUCE
          Ref args = Pop();
          Ref callable = Pop();
          Push(Call(callable, args));
          break;
        }
        case 0x81: {  // NEWOBJ
          Ref args = Pop();
          Ref cls = Pop();
          Push(Call(cls, args));
          break;
        }
        case 0x92: {  // NEWOBJ_EX
          Pop();      // kwargs
          Ref args = Pop();
          Ref cls = Pop();
          Push(Call(cls, args));
          break;
        }
        case 'b': {  // BUILD
          Ref state = Pop();
          Build(Top(), state);
          break;
        }
        case 'q':
          Memo(Little(1));
          break;  // BINPUT
        case 'r':
          Memo(Little(4));
          break;  // LONG_BINPUT
        case 0x94:
          Memo(memo_.size());
          break;  // MEMOIZE
        case 'p':
          Memo(TextInt(Line(), false)->integer);
          break;  // PUT
        case 'h':
          Push(Recall(Little(1)));
          break;  // BINGET
        case 'j':
          Push(Recall(Little(4)));
          break;  // LONG_BINGET
        case 'g':
          Push(Recall(TextInt(Line(), false)->integer));
          break;  // GET
        case 'Q':
          Push(PersistentLoad(Pop()));
          break;  // BINPERSID
        default:
          throw Malformed(absl::StrCat("unsupported pickle opcode 0x", absl::Hex(op), " at byte ",
                                       position_ - 1));
      }
    }
  }

  size_t position() const { return position_; }

 private:
  uint8_t Byte() { return static_cast<uint8_t>(Take(1)[0]); }
  std::string_view Take(uint64_t n) {
    if (n > bytes_.size() - position_) throw Malformed("the file ends inside a pickle");
    std::string_view out = bytes_.substr(position_, n);
    position_ += n;
    return out;
  }
  uint64_t Little(int n) {
    uint64_t value = 0;
    std::string_view raw = Take(n);
    for (int i = n - 1; i >= 0; --i) value = value << 8 | static_cast<unsigned char>(raw[i]);
    return value;
  }
  // Integers wider than 64 bits (the legacy format's 80-bit magic number) are kept as
  // their bytes; nothing the framework reads is one.
  Ref Long(uint64_t n) {
    if (n > 8) return MakeString(std::string(Take(n)), Value::Kind::kBytes);
    return MakeInt(LongBytes(n));
  }
  int64_t LongBytes(uint64_t n) {
    std::string_view raw = Take(n);
    if (n == 0) return 0;
    uint64_t value = 0;
    for (int i = static_cast<int>(n) - 1; i >= 0; --i) {
      value = value << 8 | static_cast<unsigned char>(raw[i]);
    }
    if (n < 8 && (static_cast<unsigned char>(raw[n - 1]) & 0x80)) value -= uint64_t{1} << (8 * n);
    return static_cast<int64_t>(value);
  }
  std::string_view Line() {
    const size_t end = bytes_.find('\n', position_);
    if (end == std::string_view::npos) throw Malformed("the file ends inside a pickle");
    std::string_view line = bytes_.substr(position_, end - position_);
    position_ = end + 1;
    return line;
  }
  Ref TextInt(std::string_view text, bool boolean_spellings) {
    if (boolean_spellings && (text == "00" || text == "01")) {
      Ref b = Make(Value::Kind::kBool);
      b->integer = text == "01";
      return b;
    }
    if (!text.empty() && text.back() == 'L') text.remove_suffix(1);
    int64_t value = 0;
    if (!absl::SimpleAtoi(std::string(text), &value)) throw Malformed("bad INT");
    return MakeInt(value);
  }

  size_t Floor() const { return marks_.empty() ? 0 : marks_.back(); }
  void Push(Ref value) { stack_.push_back(std::move(value)); }
  Ref Pop() {
    if (stack_.size() <= Floor()) throw Malformed("stack underflow");
    Ref value = std::move(stack_.back());
    stack_.pop_back();
    return value;
  }
  const Ref& Top() const {
    if (stack_.size() <= Floor()) throw Malformed("stack underflow");
    return stack_.back();
  }
  std::vector<Ref> PopMark() {
    if (marks_.empty()) throw Malformed("no MARK to pop to");
    const size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<Ref> items(stack_.begin() + mark, stack_.end());
    stack_.resize(mark);
    return items;
  }
  static Ref List(const Ref& value) {
    if (value->kind != Value::Kind::kList) throw Malformed("APPEND to something not a list");
    return value;
  }
  static void SetItems(const Ref& target, const std::vector<Ref>& items) {
    if (target->kind != Value::Kind::kDict) throw Malformed("SETITEM on something not a dict");
    if (items.size() % 2 != 0) throw Malformed("SETITEMS with an odd number of items");
    for (size_t i = 0; i < items.size(); i += 2)
      target->entries.emplace_back(items[i], items[i + 1]);
  }
  void Memo(uint64_t index) {
    if (index > bytes_.size()) throw Malformed("memo index beyond the file");
    memo_[index] = Top();
  }
  Ref Recall(uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) throw Malformed(absl::StrCat("memo entry ", index, " is unset"));
    return it->second;
  }

  // ('storage', storage type, key, location, numel[, legacy view metadata])
  Ref PersistentLoad(const Ref& id) {
    const std::vector<Ref>& parts = AsSequence(id, "a persistent id");
    if (parts.size() < 5 || AsString(parts[0], "a persistent id's tag") != "storage" ||
        parts[1]->special != Value::Special::kGlobal) {
      throw Malformed("a persistent id that is not a storage");
    }
    const std::optional<at::ScalarType> dtype = StorageDtype(parts[1]->text);
    if (!dtype) throw Malformed(absl::StrCat("unsupported storage type ", parts[1]->text));
    const std::string& key = AsString(parts[2], "a storage key");
    const int64_t numel = AsInt(parts[4], "a storage size");
    if (numel < 0) throw Malformed("a negative storage size");
    auto cached = storages_by_key_.find(key);
    at::Tensor storage = cached != storages_by_key_.end()
                             ? cached->second
                             : storages_by_key_[key] = storages_->Load(key, *dtype, numel);
    if (storage.scalar_type() != *dtype) throw Malformed("one storage read with two dtypes");
    if (parts.size() > 5 && parts[5]->kind == Value::Kind::kTuple) {  // legacy storage view
      const std::vector<Ref>& view = parts[5]->items;
      if (view.size() != 3) throw Malformed("bad storage view metadata");
      const int64_t offset = AsInt(view[1], "a view offset");
      const int64_t size = AsInt(view[2], "a view size");
      if (offset < 0 || size < 0 || offset + size > storage.numel()) {
        throw Malformed("a storage view outside its storage");
      }
      storage = storage.narrow(0, offset, size);
    }
    return MakeTensor(storage, Value::Special::kStorage);
  }

  static std::vector<int64_t> Ints(const Ref& v, const char* what) {
    std::vector<int64_t> out;
    for (const Ref& item : AsSequence(v, what)) out.push_back(AsInt(item, what));
    return out;
  }

  // storage.as_strided(size, stride, offset), with the bounds checked first.
  static Ref RebuildTensor(const std::vector<Ref>& args) {
    if (args.size() < 4 || args[0]->special != Value::Special::kStorage) {
      throw Malformed("_rebuild_tensor without a storage");
    }
    const at::Tensor& storage = args[0]->tensor;
    const int64_t offset = AsInt(args[1], "a tensor's storage offset");
    const std::vector<int64_t> size = Ints(args[2], "a tensor's size");
    const std::vector<int64_t> stride = Ints(args[3], "a tensor's stride");
    if (size.size() != stride.size() || offset < 0) throw Malformed("bad tensor geometry");
    int64_t last = offset;
    bool empty = false;
    for (size_t i = 0; i < size.size(); ++i) {
      if (size[i] < 0 || stride[i] < 0) throw Malformed("bad tensor geometry");
      if (size[i] == 0) empty = true;
      if (size[i] > 0 && stride[i] > 0 &&
          (size[i] - 1) > (std::numeric_limits<int64_t>::max() - last) / stride[i]) {
        throw Malformed("bad tensor geometry");
      }
      if (size[i] > 0) last += (size[i] - 1) * stride[i];
    }
    if (!empty && last >= storage.numel()) throw Malformed("a tensor outside its storage");
    at::Tensor tensor =
        empty ? at::empty(size, storage.options()) : storage.as_strided(size, stride, offset);
    if (args.size() > 4 && args[4]->kind == Value::Kind::kBool && args[4]->integer) {
      tensor.set_requires_grad(tensor.is_floating_point());
    }
    return MakeTensor(tensor);
  }

  Ref Call(const Ref& callable, const Ref& args_value) {
    if (callable->special != Value::Special::kGlobal) throw Malformed("REDUCE of a non-global");
    const std::string& name = callable->text;
    if (name.rfind("torch.jit._pickle.", 0) == 0 || name.rfind("__torch__.", 0) == 0) {
      throw LibTorchTyped(name);
    }
    const std::vector<Ref>& args = AsSequence(args_value, "REDUCE's arguments");
    if (name == "collections.OrderedDict" || name == "builtins.dict") {
      Ref d = Make(Value::Kind::kDict);
      if (!args.empty()) {
        for (const Ref& pair : AsSequence(args[0], "OrderedDict's items")) {
          const std::vector<Ref>& kv = AsSequence(pair, "an OrderedDict item");
          if (kv.size() != 2) throw Malformed("an OrderedDict item that is not a pair");
          d->entries.emplace_back(kv[0], kv[1]);
        }
      }
      return d;
    }
    if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor") {
      return RebuildTensor(args);
    }
    if (name == "torch._utils._rebuild_parameter" ||
        name == "torch._utils._rebuild_parameter_with_state") {
      if (args.empty() || !IsTensor(args[0])) throw Malformed("a parameter without its tensor");
      return args[0];
    }
    if (name == "torch._tensor._rebuild_from_type_v2" ||
        name == "torch._tensor._rebuild_from_type") {
      if (args.size() < 3) throw Malformed("_rebuild_from_type without arguments");
      return Call(args[0], args[2]);
    }
    if (name == "builtins.set" || name == "builtins.frozenset" || name == "builtins.list") {
      Ref l = Make(Value::Kind::kList);
      if (!args.empty()) l->items = AsSequence(args[0], "a set's items");
      return l;
    }
    if (name == "torch.Size") {
      Ref t = Make(Value::Kind::kTuple);
      if (!args.empty()) t->items = AsSequence(args[0], "a torch.Size");
      return t;
    }
    if (name == "torch.device") {
      std::string device = args.empty() ? "cpu" : AsString(args[0], "a device");
      if (args.size() > 1) absl::StrAppend(&device, ":", AsInt(args[1], "a device index"));
      return MakeString(device);
    }
    if (name == "_codecs.encode" && !args.empty() && args[0]->kind == Value::Kind::kString) {
      return MakeString(Latin1(args[0]->text), Value::Kind::kBytes);
    }
    // Anything else (argparse.Namespace, numpy scalars, ...): an object whose attributes,
    // if BUILD gives any, become a dict.
    Ref object = MakeSpecial(Value::Special::kObject, name);
    object->items = args;
    if (name == "copyreg._reconstructor" && !args.empty() &&
        args[0]->special == Value::Special::kGlobal) {
      object->text = args[0]->text;
    }
    return object;
  }

  static void Build(const Ref& target, const Ref& state) {
    if (target->special != Value::Special::kObject) return;  // e.g. OrderedDict._metadata
    Ref attributes = state;
    if (state->kind == Value::Kind::kTuple && !state->items.empty()) attributes = state->items[0];
    if (attributes->kind == Value::Kind::kDict) target->entries = attributes->entries;
  }

  // Python's str.encode('latin1') of the UTF-8 text pickled by numpy under protocol 2.
  static std::string Latin1(const std::string& utf8) {
    std::string out;
    for (size_t i = 0; i < utf8.size(); ++i) {
      const unsigned char c = utf8[i];
      if (c < 0x80) {
        out.push_back(static_cast<char>(c));
      } else if ((c & 0xE0) == 0xC0 && i + 1 < utf8.size()) {
        out.push_back(static_cast<char>(((c & 0x1F) << 6) | (utf8[++i] & 0x3F)));
      } else {
        throw Malformed("non-latin-1 bytes");
      }
    }
    return out;
  }

  std::string_view bytes_;
  size_t position_;
  StorageSource* storages_;
  std::vector<Ref> stack_;
  std::vector<size_t> marks_;
  std::map<uint64_t, Ref> memo_;
  std::map<std::string, at::Tensor> storages_by_key_;
};

class ZipStorages : public StorageSource {
 public:
  explicit ZipStorages(caffe2::serialize::PyTorchStreamReader* reader) : reader_(reader) {}
  at::Tensor Load(const std::string& key, at::ScalarType dtype, int64_t numel) override {
    const std::string record = "data/" + key;
    if (!reader_->hasRecord(record)) throw Malformed(absl::StrCat("no record ", record));
    auto [data, size] = reader_->getRecord(record);
    const size_t element = c10::elementSize(dtype);
    if (static_cast<uint64_t>(numel) > size / element) {
      throw Malformed(absl::StrCat("record ", record, " is shorter than its storage"));
    }
    at::Tensor storage = at::empty({numel}, at::TensorOptions().dtype(dtype));
    if (numel > 0) std::memcpy(storage.data_ptr(), data.get(), numel * element);
    return storage;
  }

 private:
  caffe2::serialize::PyTorchStreamReader* reader_;
};

// Legacy files: storages are created empty while unpickling and filled afterwards.
class LegacyStorages : public StorageSource {
 public:
  explicit LegacyStorages(size_t file_size) : file_size_(file_size) {}
  at::Tensor Load(const std::string& key, at::ScalarType dtype, int64_t numel) override {
    if (static_cast<uint64_t>(numel) > file_size_)
      throw Malformed("a storage larger than the file");
    at::Tensor storage = at::zeros({numel}, at::TensorOptions().dtype(dtype));
    storages_[key] = storage;
    return storage;
  }
  std::map<std::string, at::Tensor>& storages() { return storages_; }

 private:
  size_t file_size_;
  std::map<std::string, at::Tensor> storages_;
};

constexpr int kMaxDepth = 256;

c10::IValue DictToIValue(const Value& value, int depth);

c10::IValue ToIValue(const Ref& value, int depth) {
  if (depth > kMaxDepth) throw Malformed("nesting deeper than 256 levels (or a cycle)");
  switch (value->special) {
    case Value::Special::kTensor:
    case Value::Special::kStorage:
      return value->tensor;
    case Value::Special::kGlobal:
      return value->text;
    case Value::Special::kObject:
      if (value->entries.empty()) return c10::IValue();
      return DictToIValue(*value, depth);  // its attributes
    case Value::Special::kNone:
      break;
  }
  switch (value->kind) {
    case Value::Kind::kNone:
      return c10::IValue();
    case Value::Kind::kBool:
      return static_cast<bool>(value->integer);
    case Value::Kind::kInt:
      return value->integer;
    case Value::Kind::kFloat:
      return value->number;
    case Value::Kind::kString:
    case Value::Kind::kBytes:
      return value->text;
    case Value::Kind::kTuple: {
      std::vector<c10::IValue> items;
      for (const Ref& item : value->items) items.push_back(ToIValue(item, depth + 1));
      return c10::ivalue::Tuple::create(std::move(items));
    }
    case Value::Kind::kList: {
      c10::impl::GenericList list(c10::AnyType::get());
      for (const Ref& item : value->items) list.push_back(ToIValue(item, depth + 1));
      return list;
    }
    case Value::Kind::kDict:
      break;
  }
  return DictToIValue(*value, depth);
}

c10::IValue DictToIValue(const Value& value, int depth) {
  bool all_strings = true, all_ints = true;
  for (const auto& [key, unused] : value.entries) {
    all_strings &= key->kind == Value::Kind::kString && key->special == Value::Special::kNone;
    all_ints &= key->kind == Value::Kind::kInt && key->special == Value::Special::kNone;
  }
  const bool int_keys = all_ints && !value.entries.empty();
  c10::impl::GenericDict dict =
      int_keys ? c10::impl::GenericDict(c10::IntType::get(), c10::AnyType::get())
               : c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get());
  for (const auto& [key, item] : value.entries) {
    c10::IValue converted = ToIValue(item, depth + 1);
    if (int_keys) {
      dict.insert_or_assign(key->integer, std::move(converted));
    } else if (all_strings) {
      dict.insert_or_assign(key->text, std::move(converted));
    } else {
      const c10::IValue k = ToIValue(key, depth + 1);
      dict.insert_or_assign(k.isString() ? k.toStringRef() : c10::str(k), std::move(converted));
    }
  }
  return dict;
}

constexpr char kLegacyMagic[] = "\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";

// LibTorch's MemoryReadAdapter copies whatever range miniz asks for; a corrupt central
// directory then reads past the buffer (found by fuzzing). Reads here stop at its end.
class BoundedReadAdapter final : public caffe2::serialize::ReadAdapterInterface {
 public:
  explicit BoundedReadAdapter(std::string_view bytes) : bytes_(bytes) {}
  size_t size() const override { return bytes_.size(); }
  size_t read(uint64_t pos, void* buf, size_t n, const char* what = "") const override {
    if (pos >= bytes_.size()) return 0;
    n = static_cast<size_t>(std::min<uint64_t>(n, bytes_.size() - pos));
    std::memcpy(buf, bytes_.data() + pos, n);
    return n;
  }

 private:
  std::string_view bytes_;
};

c10::IValue ParseZip(std::string_view bytes) {
  auto adapter = std::make_shared<BoundedReadAdapter>(bytes);
  caffe2::serialize::PyTorchStreamReader reader(adapter);
  if (!reader.hasRecord("data.pkl")) throw Malformed("the zip archive has no data.pkl");
  auto [data, size] = reader.getRecord("data.pkl");
  const std::string_view pickle(static_cast<const char*>(data.get()), size);
  ZipStorages storages(&reader);
  Unpickler unpickler(pickle, 0, &storages);
  return ToIValue(unpickler.Run(), 0);
}

c10::IValue ParseLegacy(std::string_view bytes) {
  LegacyStorages storages(bytes.size());
  size_t position = 0;
  // magic number, protocol version, system info, then the object
  for (int header = 0; header < 3; ++header) {
    Unpickler skip(bytes, position, &storages);
    skip.Run();
    position = skip.position();
  }
  Unpickler object_reader(bytes, position, &storages);
  const Ref object = object_reader.Run();
  Unpickler keys_reader(bytes, object_reader.position(), &storages);
  const Ref keys = keys_reader.Run();
  position = keys_reader.position();
  for (const Ref& key : AsSequence(keys, "the storage key list")) {
    auto it = storages.storages().find(AsString(key, "a storage key"));
    if (it == storages.storages().end()) throw Malformed("a storage key nothing refers to");
    if (bytes.size() - position < 8) throw Malformed("the file ends before a storage");
    int64_t numel = 0;
    std::memcpy(&numel, bytes.data() + position, 8);
    position += 8;
    at::Tensor& storage = it->second;
    const uint64_t length = static_cast<uint64_t>(storage.numel()) * storage.element_size();
    if (numel != storage.numel() || length > bytes.size() - position) {
      throw Malformed("a storage's data is cut short or the wrong size");
    }
    if (length > 0) std::memcpy(storage.data_ptr(), bytes.data() + position, length);
    position += length;
  }
  return ToIValue(object, 0);
}

}  // namespace

absl::StatusOr<c10::IValue> ParseTorchSave(std::string_view bytes, const std::string& name) {
  try {
    if (bytes.size() >= 4 && bytes.substr(0, 4) == std::string_view("PK\x03\x04", 4)) {
      return ParseZip(bytes);
    }
    // Legacy files open with the pickled magic number (protocol 2: \x80\x02\x8a\x0a...).
    if (bytes.size() >= 14 && bytes.substr(4, 10) == std::string_view(kLegacyMagic, 10)) {
      return ParseLegacy(bytes);
    }
    return absl::InvalidArgumentError(
        absl::StrCat(name,
                     " is not a PyTorch file (neither torch.save's zip nor its legacy "
                     "format)"));
  } catch (const LibTorchTyped& e) {
    return absl::UnimplementedError(
        absl::StrCat(name, " holds TorchScript-typed values (", e.what(), ")"));
  } catch (const Malformed& e) {
    return absl::DataLossError(absl::StrCat(name, " is a damaged PyTorch file: ", e.what()));
  } catch (const c10::Error& e) {
    std::string message = e.what_without_backtrace();
    message = message.substr(0, message.find('\n'));
    return absl::DataLossError(absl::StrCat(name, " is a damaged PyTorch file: ", message));
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat(name, " is a damaged PyTorch file: ", e.what()));
  }
}

}  // namespace ssl::train
