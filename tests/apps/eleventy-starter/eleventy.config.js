// Markdown in content/ becomes pages; public/ is copied as it is to the site's root (its CSS, robots.txt).
export default function (eleventyConfig) {
  eleventyConfig.addPassthroughCopy({ "./public/": "/" });
}

export const config = {
  dir: { input: "content", output: "_site" },
};
