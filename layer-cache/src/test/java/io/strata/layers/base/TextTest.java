package io.strata.layers.base;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

/** Numbers as people type them, and input that stays on its line (issue 16, items 10, 12). */
class TextTest {
  @ParameterizedTest
  @ValueSource(strings = {"NaN", "Infinity", "-1", "0x1p-3", "1e3", "1d", " 1", "", "1.2.3",
      "1234567890123456789012"})
  void onlyDecimalsAreNumbers(String typed) {
    assertThatThrownBy(() -> Text.decimal(typed, "--cpus")).isInstanceOf(
        IllegalArgumentException.class).hasMessageContaining("expected a decimal number");
  }

  @Test
  void decimalsAreRead() {
    assertThat(Text.decimal("0.5", "--cpus")).isEqualTo(0.5);
    assertThat(Text.decimal(".25", "--cpus")).isEqualTo(0.25);
    assertThat(Text.decimal("30", "timeout=")).isEqualTo(30.0);
    assertThatThrownBy(() -> Text.decimal("soon", "timeout=")).hasMessageStartingWith(
        "timeout=soon:");
  }

  @Test
  void controlCharactersAreEscaped() {
    assertThat(Text.printable("key\nforged line\t\u001b[2J\u007f\u0085é"))
        .isEqualTo("key\\nforged line\\t\\x1b[2J\\x7f\\x85é");
    assertThat(Text.printable("plain")).isSameAs("plain");
  }
}
