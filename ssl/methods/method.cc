#include "ssl/methods/method.h"

#include "absl/strings/str_cat.h"

namespace ssl::methods {

c10::impl::GenericDict NewStateDict() {
  return c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get());
}

c10::impl::GenericDict Method::ExtraState() { return NewStateDict(); }

absl::Status Method::LoadExtraState(const c10::impl::GenericDict& state) {
  if (state.size() != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the checkpoint holds ", state.size(), " extra state entries that ", name(),
                     " does not keep (first: ", state.begin()->key().toStringRef(), ")"));
  }
  return absl::OkStatus();
}

}  // namespace ssl::methods
